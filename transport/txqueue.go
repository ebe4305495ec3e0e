package transport

import (
	"net/netip"
	"sync/atomic"
)

// txQueue is a node socket's sender. Runs of datagrams handed to it are
// written by its one goroutine, so the caller (quic-go's connection loop)
// goes on packing the next run while the kernel takes this one; and the
// runs that queue up meanwhile leave together, merged into one GSO write
// where they fit (same destination and datagram size, at most maxBatch
// datagrams and maxRunBytes). quic-go hands over at most 14 packets per
// write (its own constant); merged, a bulk transfer makes a half to a third
// of the writes, and the receiver as many fewer reads (BENCHMARKS.md,
// round twelve).
//
// Order: what one goroutine sends through the socket leaves in the order
// it sent it. A send that does not queue (a single datagram: a ping, an
// acknowledgement) is written at once only when nothing is queued or being
// written; otherwise it queues behind. So a ping trails the packets sent
// before it, as the liveness rule needs (disco.go), and nothing waits on
// a goroutine when the socket is idle.
//
// The queue holds at most txQueueLen runs, each in a buffer of segBufs; a
// sender that finds it full waits, as it would in a blocking write.
type txQueue struct {
	runs chan txRun
	// queued counts the runs in runs and the ones being written: a send
	// that would go around the queue while it is not 0 would overtake
	// them.
	queued atomic.Int32
	stop   chan struct{}
	done   chan struct{}
	write  func(run []byte, dgram, k int, to netip.AddrPort)

	// beforeWrite, when set (tests), runs before each write.
	beforeWrite func()
}

// txRun is a run of k datagrams of dgram bytes (the last may be shorter)
// to one destination, in run, which lies in buf, a segBufs buffer the
// queue owns until it is written.
type txRun struct {
	buf      *[]byte
	run      []byte
	dgram, k int
	to       netip.AddrPort
}

const txQueueLen = 16

func newTxQueue(write func(run []byte, dgram, k int, to netip.AddrPort)) *txQueue {
	q := &txQueue{
		runs:  make(chan txRun, txQueueLen),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		write: write,
	}
	go q.loop()
	return q
}

// busy says whether runs are queued or being written.
func (q *txQueue) busy() bool { return q.queued.Load() != 0 }

// put queues r, handing its buffer to the queue. After close, r is
// dropped: a closed socket sends nothing.
func (q *txQueue) put(r txRun) {
	q.queued.Add(1)
	select {
	case q.runs <- r:
	case <-q.stop:
		q.queued.Add(-1)
		segBufs.Put(r.buf)
	}
}

// putCopy queues a copy of run: the caller keeps its buffer.
func (q *txQueue) putCopy(run []byte, dgram, k int, to netip.AddrPort) {
	bp := segBufs.Get().(*[]byte)
	*bp = append((*bp)[:0], run...) // grows the buffer if run is larger, as a single datagram may be
	q.put(txRun{buf: bp, run: *bp, dgram: dgram, k: k, to: to})
}

// close stops the sender and waits for it. Runs still queued are dropped.
func (q *txQueue) close() {
	close(q.stop)
	<-q.done
}

func (q *txQueue) loop() {
	defer close(q.done)
	for {
		var r txRun
		select {
		case r = <-q.runs:
		case <-q.stop:
			return
		}
		merged := int32(1)
		for {
			var n txRun
			select {
			case n = <-q.runs:
			default:
			}
			if n.buf == nil {
				break
			}
			if r.merge(n) {
				segBufs.Put(n.buf)
				merged++
				continue
			}
			q.flush(r, merged)
			r, merged = n, 1
		}
		q.flush(r, merged)
	}
}

// merge appends n to r when they can go as one GSO write: same
// destination and datagram size, every datagram of r whole (only a run's
// last may be shorter), within the kernel's limits, and room in r's
// buffer (which then holds both).
func (r *txRun) merge(n txRun) bool {
	if n.to != r.to || n.dgram != r.dgram || len(r.run)%r.dgram != 0 ||
		r.k+n.k > maxBatch || len(r.run)+len(n.run) > maxRunBytes || len(r.run)+len(n.run) > cap(r.run) {
		return false
	}
	r.run = append(r.run, n.run...)
	r.k += n.k
	return true
}

func (q *txQueue) flush(r txRun, runs int32) {
	if q.beforeWrite != nil {
		q.beforeWrite()
	}
	q.write(r.run, r.dgram, r.k, r.to)
	segBufs.Put(r.buf)
	q.queued.Add(-runs)
}

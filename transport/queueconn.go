package transport

import (
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// packetBufSize holds any packet a 1500-byte MTU carries, with room to
// spare; larger datagrams are truncated and then fail authentication.
const packetBufSize = 2048

var packetBufs = sync.Pool{New: func() any { b := make([]byte, packetBufSize); return &b }}

// queuedPacket is a packet in a queueConn: b, in a buffer of its own from
// packetBufs (buf), or in the buffer of the socket read it came in (blk,
// lent for as long as the packet is queued: rxblock.go).
type queuedPacket struct {
	b    []byte
	buf  *[]byte
	blk  *rxBlock
	addr net.Addr
}

// ownPacket is a queued packet of the first n bytes of buf.
func ownPacket(buf *[]byte, n int, addr net.Addr) queuedPacket {
	return queuedPacket{b: (*buf)[:n], buf: buf, addr: addr}
}

// release gives the packet's buffer back.
func (p queuedPacket) release() {
	switch {
	case p.blk != nil:
		p.blk.unref(1)
	case p.buf != nil:
		packetBufs.Put(p.buf)
	}
}

// releaser gives back the buffers of packets taken in a row, dropping
// their references to a lent block together.
type releaser struct {
	blk *rxBlock
	n   int32
}

func (r *releaser) release(p queuedPacket) {
	if p.blk == nil {
		p.release()
		return
	}
	if p.blk != r.blk {
		r.flush()
		r.blk = p.blk
	}
	r.n++
}

func (r *releaser) flush() {
	if r.n > 0 {
		r.blk.unref(r.n)
	}
	r.blk, r.n = nil, 0
}

// queueConn is a net.PacketConn whose reads come from a queue that the
// socket's reader fills and whose writes go to a function. quic-go runs on
// it. Its read deadline is real: quic-go's Transport.Close sets one to stop
// its reader and would wait forever otherwise.
//
// The queue is a slice behind a mutex, not a channel, so that the socket's
// reader hands over all the packets of one GRO read at once (deliverRun)
// and the reader takes them all at once (it swaps the slice for its empty
// one): one lock and at most one wake-up per run each way, where a channel
// took a lock per packet and woke the reader for the first packet of a run,
// which then parked again between packets.
type queueConn struct {
	write  func(b []byte, addr net.Addr) (int, error)
	local  net.Addr
	closed chan struct{}
	once   sync.Once
	depth  int

	// ready holds a token once packets were queued: the reader waits on it.
	ready chan struct{}
	// queued counts the packets in q and in the reader's cur, which
	// together stay within depth: a full queue drops what arrives.
	queued atomic.Int32

	mu       sync.Mutex
	q        []queuedPacket
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes

	// The reader's side: the run it took from q, and where it is in it.
	// readMu is held by the one reader quic-go runs, so it costs nothing.
	readMu sync.Mutex
	cur    []queuedPacket
	pos    int
	inRow  int         // packets taken since the reader last waited
	timer  *time.Timer // await's, kept from one wait to the next
}

// yieldAfter is how many packets quic-go's reader takes in a row before
// it lets other goroutines run. quic-go queues at most 256 unprocessed
// packets per connection and drops the rest (MaxConnUnprocessedPackets).
// Its reader only parses a header per packet, where the connection
// decrypts and handles each; at one P, the way the roles run while light,
// the reader took everything queued here before the connection ran at
// all, and a backlog of more than 256 — the receiver being the slower end
// of a bulk transfer — became drops: losses to the sender, with
// retransmissions and a congestion window cut back to about what that
// queue holds. Yielding lets the connection, which the reader's hand-over
// readied, empty its queue first. With several Ps the two run side by side
// and a yield bounds nothing; there the reader counts (rxcredit.go).
const yieldAfter = 64

func newQueueConn(depth int, local net.Addr, write func([]byte, net.Addr) (int, error)) *queueConn {
	return &queueConn{
		write:   write,
		local:   local,
		depth:   depth,
		closed:  make(chan struct{}),
		ready:   make(chan struct{}, 1),
		changed: make(chan struct{}),
	}
}

// deliver queues a packet, taking ownership of buf. A full queue drops the
// packet, as a full socket buffer would; QUIC recovers.
func (c *queueConn) deliver(buf *[]byte, n int, addr net.Addr) {
	c.deliverRun([]queuedPacket{ownPacket(buf, n, addr)})
}

// deliverRun queues packets in order, taking ownership of their buffers
// (or of their references to a lent one), and drops (and releases) those
// beyond the queue's depth.
func (c *queueConn) deliverRun(pkts []queuedPacket) {
	if len(pkts) == 0 {
		return
	}
	c.mu.Lock()
	room := max(0, c.depth-int(c.queued.Load()))
	take := min(room, len(pkts))
	c.q = append(c.q, pkts[:take]...)
	c.queued.Add(int32(take))
	c.mu.Unlock()
	for _, p := range pkts[take:] {
		p.release()
	}
	if take > 0 {
		select {
		case c.ready <- struct{}{}:
		default:
		}
	}
}

func (c *queueConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	pkt, err := c.next()
	if err != nil {
		return 0, nil, err
	}
	c.queued.Add(-1)
	c.inRow++
	return c.take(p, pkt)
}

// next waits for a packet, until the conn closes or the read deadline,
// and takes it off the queue; the caller holds readMu, lowers queued and
// adds what it took to inRow. It yields first after yieldAfter in a row.
func (c *queueConn) next() (queuedPacket, error) {
	c.yield()
	for {
		select {
		case <-c.closed:
			return queuedPacket{}, net.ErrClosed
		default:
		}
		if pkt, ok := c.poll(); ok {
			return pkt, nil
		}
		if err := c.await(nil, 0); err != nil {
			return queuedPacket{}, err
		}
	}
}

// yield lets other goroutines run once the reader has taken yieldAfter
// packets in a row; the caller holds readMu.
func (c *queueConn) yield() {
	if c.inRow >= yieldAfter {
		c.inRow = 0
		runtime.Gosched()
	}
}

// await returns once packets may have been queued, progress has a token,
// or wake has passed (when not 0); or with an error once the conn closed
// or the read deadline passed. The caller holds readMu.
func (c *queueConn) await(progress <-chan struct{}, wake time.Duration) error {
	c.inRow = 0
	c.mu.Lock()
	deadline, changed := c.deadline, c.changed
	c.mu.Unlock()
	var timeout <-chan time.Time
	d := wake
	if !deadline.IsZero() {
		dd := time.Until(deadline)
		if dd <= 0 {
			return os.ErrDeadlineExceeded
		}
		if d == 0 || dd < d {
			d = dd
		}
	}
	if d > 0 {
		if c.timer == nil {
			c.timer = time.NewTimer(d)
		} else {
			c.timer.Reset(d)
		}
		timeout = c.timer.C
		defer c.timer.Stop()
	}
	select {
	case <-c.ready:
	case <-progress:
	case <-c.closed:
		return net.ErrClosed
	case <-timeout:
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return os.ErrDeadlineExceeded
		}
	case <-changed:
	}
	return nil
}

// poll takes the next queued packet without waiting; the caller holds
// readMu.
func (c *queueConn) poll() (queuedPacket, bool) {
	if c.pos == len(c.cur) {
		c.mu.Lock()
		clear(c.cur) // drop the references to delivered buffers and addresses
		c.cur, c.q = c.q, c.cur[:0]
		c.mu.Unlock()
		c.pos = 0
		if len(c.cur) == 0 {
			return queuedPacket{}, false
		}
	}
	pkt := c.cur[c.pos]
	c.pos++
	return pkt, true
}

func (c *queueConn) take(p []byte, pkt queuedPacket) (int, net.Addr, error) {
	n := copy(p, pkt.b)
	pkt.release()
	return n, pkt.addr, nil
}

func (c *queueConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	return c.write(p, addr)
}

func (c *queueConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *queueConn) LocalAddr() net.Addr { return c.local }

func (c *queueConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *queueConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// Writes never block for long (a UDP send), so there is no write deadline.
func (c *queueConn) SetWriteDeadline(time.Time) error { return nil }

package transport

// Credit: quic-go's reader may hand a connection only so many bytes more
// than the connection has taken off its queue.
//
// quic-go queues at most 256 unprocessed packets per connection and drops
// the rest (MaxConnUnprocessedPackets). Its reader only parses a header per
// packet, where the connection decrypts and handles each, so whenever the
// receiver is the slower end of a transfer a backlog forms, and the reader
// moves it from our queue into quic-go's faster than the connection empties
// it: the excess is lost, the sender retransmits and keeps its congestion
// window near what that queue holds. At one P the reader yields every
// yieldAfter packets (queueconn.go), and the connection it readied runs
// first. With several Ps the two run side by side and a yield bounds
// nothing, so the reader counts: a connection's ConnectionStats says how
// many bytes it took off its queue (BytesReceived, counted as each datagram
// is taken, whether or not it decrypts), and the reader knows how many it
// handed over for the connection's peer. Past creditLimit the reader waits
// for the connection to catch up, woken by the connection's writes (an
// acknowledgement goes out after each pass over its queue) or, lacking any,
// after creditWake.
//
// Invariants: the reader never waits longer than creditGiveUp in a row for
// one connection; then it forgets what it counted for it, so a count that
// went wrong (a packet for an endpoint that quic-go routes to no
// connection, or to one we do not count) delays, and never stalls. An
// endpoint with more than one connection is not counted.

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

const (
	// creditLimit is half of quic-go's queue in full packets: room for
	// the batch the reader is taking and for the packets of other peers.
	creditLimit = 128 * innerPacketSize
	// creditCheck: the reader compares once per this many bytes handed,
	// so it may pass creditLimit by this much and a batch.
	creditCheck = 32 * innerPacketSize
	creditWake  = 500 * time.Microsecond
	// creditGiveUp ends a wait that sees no progress.
	creditGiveUp = 5 * time.Millisecond
)

// rxAccount is what the reader handed over for one endpoint.
type rxAccount struct {
	conn   *quic.Conn // nil: several connections share the endpoint
	n      int        // connections on the endpoint
	handed uint64     // bytes handed to quic-go for conn; the reader's
}

// outstanding is how many handed bytes conn has not taken yet.
func (a *rxAccount) outstanding() int64 {
	return int64(a.handed - a.conn.ConnectionStats().BytesReceived)
}

// rxCredit holds the accounts of one innerConn.
type rxCredit struct {
	mu    sync.Mutex
	accts map[Endpoint]*rxAccount

	// The reader's side (innerConn.readMu): the account it used last, so
	// that a run from one peer costs one lookup, and its timer.
	last   *rxAccount
	lastEp Endpoint
	timer  *time.Timer
	// unchecked counts the bytes handed since wait last looked: it looks
	// once per creditCheck, not per batch, since a look costs a lock and
	// the connection's statistics.
	unchecked int

	waiting  atomic.Bool
	progress chan struct{}
}

func newRxCredit() *rxCredit {
	return &rxCredit{accts: make(map[Endpoint]*rxAccount), progress: make(chan struct{}, 1)}
}

// add counts ep's packets as c's, while c is ep's only connection.
func (r *rxCredit) add(ep Endpoint, c *quic.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.accts[ep]
	if a == nil {
		a = &rxAccount{}
		r.accts[ep] = a
	}
	a.n++
	if a.n == 1 {
		a.conn = c
		a.handed = c.ConnectionStats().BytesReceived
	} else {
		a.conn = nil
	}
	r.last = nil
}

// remove undoes add.
func (r *rxCredit) remove(ep Endpoint, c *quic.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.accts[ep]
	if a == nil {
		return
	}
	if a.n--; a.n == 0 {
		delete(r.accts, ep)
	} else {
		a.conn = nil // which one is left is not known here; count none
	}
	r.last = nil
}

// handed records n bytes handed over from ep; the reader's.
func (r *rxCredit) handed(ep Endpoint, n int) {
	r.mu.Lock()
	if r.last == nil || r.lastEp != ep {
		r.last, r.lastEp = r.accts[ep], ep
	}
	if r.last != nil && r.last.conn != nil {
		r.last.handed += uint64(n)
	}
	r.mu.Unlock()
	r.unchecked += n
}

// wait returns once the connection the reader handed packets to last has
// taken all but creditLimit of them, or after creditGiveUp; the reader's.
// It looks only once creditCheck bytes were handed since it last did, and
// not at one P, where the reader's yields keep quic-go's queue short (a
// version that looked there too read slightly slower in -against,
// BENCHMARKS.md, round fourteen).
func (r *rxCredit) wait() {
	if r.unchecked < creditCheck {
		return
	}
	r.unchecked = 0
	if runtime.GOMAXPROCS(0) == 1 {
		return // the yield holds the reader back (yieldAfter)
	}
	r.mu.Lock()
	a := r.last
	var c *quic.Conn
	if a != nil {
		c = a.conn
	}
	r.mu.Unlock()
	if c == nil {
		return
	}
	start := time.Time{}
	for {
		r.mu.Lock()
		over := a.conn == c && a.outstanding() > creditLimit
		r.mu.Unlock()
		if !over {
			return
		}
		now := time.Now()
		if start.IsZero() {
			start = now
		} else if now.Sub(start) >= creditGiveUp {
			r.mu.Lock()
			if a.conn == c {
				a.handed = c.ConnectionStats().BytesReceived
			}
			r.mu.Unlock()
			return
		}
		if r.timer == nil {
			r.timer = time.NewTimer(creditWake)
		} else {
			r.timer.Reset(creditWake)
		}
		r.waiting.Store(true)
		closed := false
		select {
		case <-r.progress:
		case <-r.timer.C:
		case <-c.Context().Done():
			closed = true // it takes nothing more; remove forgets it
		}
		r.waiting.Store(false)
		r.timer.Stop()
		if closed {
			return
		}
	}
}

// wrote tells a waiting reader that a connection sent: it may have taken
// packets off its queue.
func (r *rxCredit) wrote() {
	if r.waiting.Load() {
		select {
		case r.progress <- struct{}{}:
		default:
		}
	}
}

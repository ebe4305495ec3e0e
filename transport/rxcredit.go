package transport

// Credit and turns: quic-go's reader may hand a connection only so many
// bytes more than the connection has taken off its queue, and, while
// several peers send, hands each only so many packets in a row.
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
// handed over for the connection's peer.
//
// Once a peer is past creditLimit, the reader holds that peer's packets
// back — in arrival order, still counted in the queue's depth — and goes
// on handing over other peers' packets: one busy connection does not delay
// the rest (a first version waited for it, and another peer's round trips
// took 1 ms longer in the median, BENCHMARKS.md, round fifteen). At each
// batch it looks again, and hands the held packets over, oldest first, as
// the connection catches up. When it has nothing else to hand it waits for
// the next write of the node's connections (a connection acknowledges after
// each pass over its queue) or creditWake.
//
// Turns: whatever the Ps, a busy receiver keeps a backlog in our queue
// (about 1,400 packets in a 3 Gbit/s download, 5 ms of work), and a
// packet of another peer behind it waited for all of it. While more than
// one peer sends, a peer handed turnQuantum packets in a row waits for its
// next turn: the reader looks through the rest of the queue, keeping that
// peer's packets and handing over the others', before it goes on with it.
// A peer alone takes no turns, so a single transfer pays nothing for them.
//
// Invariants: a peer's packets reach quic-go in the order they arrived. A
// peer whose connection takes nothing for creditGiveUp while held back is
// let go, and the reader forgets half of what it counted outstanding; if
// the connection still takes nothing, it is let go again only after
// creditGiveUpAgain. So a count that went wrong (a packet for an endpoint
// that quic-go routes to no connection, or to one we do not count) delays,
// and never stalls: halved each time, the error is gone after a few. And a
// connection that took nothing because its goroutine got no CPU for a while
// (a loaded machine; -race) is not handed more than quic-go's queue holds:
// what it was handed is still queued there (forgetting all of it, or again
// after another 10 ms, lost packets so in TestBulkLosesNoPackets under
// load). A connection that is slow but taking packets is not let go at
// all (a first version gave up 5 ms after the hold began, and lost packets
// so with two busy peers on two cores). One peer holds at most maxHeld
// packets. An endpoint with more than one connection is not counted, nor
// one whose connection left: what it holds is handed over at the next
// batch. Held packets stay in the queue's depth, so holding costs no
// memory beyond what a full queue does.

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
)

const (
	// creditLimit is half of quic-go's queue in full packets: room for
	// the batch the reader is taking and for what it hands over after
	// looking (creditCheck).
	creditLimit = 128 * innerPacketSize
	// creditCheck: the reader compares once per this many bytes handed to
	// a peer, so it may pass creditLimit by this much and a batch.
	creditCheck = 32 * innerPacketSize
	creditWake  = 500 * time.Microsecond
	// creditGiveUp ends a hold during which the connection took nothing;
	// creditGiveUpAgain, one that began with a give-up.
	creditGiveUp      = 10 * time.Millisecond
	creditGiveUpAgain = 8 * creditGiveUp
	// spareHeld: the arrays of this many held lists, of at most
	// spareHeldCap packets (115 KB), are kept for the next holds once
	// emptied. A hold of a bulk transfer grows to a thousand packets or
	// so every few hundred microseconds; growing a fresh array each time
	// allocated ~100 KB per hold.
	spareHeld    = 4
	spareHeldCap = 2048
	// maxHeld bounds what one peer holds to half the queue's depth (a
	// bulk transfer held ~1,400 at most): a connection that takes nothing
	// loses its own packets, as in quic-go's queue, and leaves room in
	// ours for everyone else's.
	maxHeld = 2048
	// turnQuantum is how many packets in a row one peer is handed while
	// other peers' packets may be queued behind its backlog.
	turnQuantum = 64
	// turnMemory is how many batches (of up to 8 packets) after the
	// reader last saw two peers' packets it still takes turns: a
	// neighbour's next packet after a round trip comes some hundreds of
	// the busy peer's packets later.
	turnMemory = 1024
)

// rxAccount is what the reader handed over for one endpoint, and what it
// holds back for it.
type rxAccount struct {
	conn   *quic.Conn // nil: several connections share the endpoint, or it left
	n      int        // connections on the endpoint
	handed uint64     // bytes handed to quic-go for conn

	unchecked int            // bytes handed since the last comparison
	blocked   bool           // past creditLimit at the last comparison
	taken     uint64         // what conn had taken off its queue at since
	gaveUp    bool           // let go, and conn took nothing since
	since     time.Time      // when it was blocked, or last took packets while blocked
	held      []queuedPacket // taken off the queue while blocked, oldest first
	next      int            // held[next:] are still held
	waitTurn  bool           // had its turn: waits until the queue was looked through
	listed    bool           // in rxCredit.holds
}

func (a *rxAccount) holding() bool { return a.next < len(a.held) }

// rxCredit holds the accounts of one innerConn. Everything in it is under
// mu, which the reader holds for each batch it takes; add and remove,
// called when connections come and go, take it between batches.
type rxCredit struct {
	mu    sync.Mutex
	accts map[Endpoint]*rxAccount

	// The account the reader counted last, so that a run from one peer
	// costs one lookup.
	last   *rxAccount
	lastEp Endpoint
	// holds lists the accounts blocked or holding packets, which may
	// include some no longer in accts (their connection left); nheld
	// counts their held packets.
	holds []*rxAccount
	nheld int
	spare [][]queuedPacket // emptied held lists' arrays (spareHeld)
	// turn is the account handed packets last, inTurn how many in a row.
	// batches counts the reader's batches; mixedAt is the batch in which
	// it last went from one peer's packets to another's.
	turn    *rxAccount
	inTurn  int
	batches uint64
	mixedAt uint64

	// waiting is set while packets are held: the connections' writes
	// then leave a token in progress, which the reader waits on.
	waiting  atomic.Bool
	progress chan struct{}
}

func newRxCredit() *rxCredit {
	// batches starts at turnMemory: no turns until two peers were seen.
	return &rxCredit{accts: make(map[Endpoint]*rxAccount), progress: make(chan struct{}, 1), batches: turnMemory}
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
	a.unchecked, a.blocked = 0, false
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
	}
	a.conn = nil // which one is left is not known here; count none
	a.blocked = false
	r.last = nil
}

// account returns ep's account, or nil; the caller holds mu.
func (r *rxCredit) account(ep Endpoint) *rxAccount {
	if r.last == nil || r.lastEp != ep {
		r.last, r.lastEp = r.accts[ep], ep
	}
	return r.last
}

// list adds a to holds; the caller holds mu.
func (r *rxCredit) list(a *rxAccount) {
	if !a.listed {
		a.listed = true
		r.holds = append(r.holds, a)
	}
}

// What admit decides for a packet.
const (
	admitHand = iota // to quic-go now; counted
	admitHold        // kept, behind what its peer already holds
	admitDrop        // its peer holds maxHeld already: the caller drops it
)

// admit decides for a packet the reader took off the queue. The caller
// holds mu.
func (r *rxCredit) admit(pkt queuedPacket) int {
	ep, ok := AddrEndpoint(pkt.addr)
	if !ok {
		return admitHand
	}
	a := r.account(ep)
	if a == nil {
		return admitHand
	}
	if a.blocked || a.waitTurn || a.holding() {
		if len(a.held)-a.next >= maxHeld {
			return admitDrop
		}
		if a.held == nil && len(r.spare) > 0 {
			a.held, r.spare = r.spare[len(r.spare)-1], r.spare[:len(r.spare)-1]
		}
		if len(a.held) == cap(a.held) && a.next >= len(a.held)/2 {
			// A hold that never empties (a long transfer, always a little
			// behind) moves what it still holds to the front rather than
			// growing: the array stays within twice maxHeld.
			k := copy(a.held, a.held[a.next:])
			clear(a.held[k:])
			a.held, a.next = a.held[:k], 0
		}
		a.held = append(a.held, pkt)
		r.nheld++
		r.list(a)
		return admitHold
	}
	r.served(a)
	r.count(a, len(pkt.b))
	return admitHand
}

// served records a packet handed over for a: after turnQuantum in a row,
// a waits for the reader to look through the rest of the queue, handing
// over other peers' packets and keeping a's, before it goes on. Only while
// more than one peer sends (the reader went from one peer's packets to
// another's in the last turnMemory batches): a peer alone would have its
// packets kept and handed back for nothing, which cost its receiver 5 %
// more CPU per GB. The caller holds mu.
func (r *rxCredit) served(a *rxAccount) {
	if r.turn != a {
		if r.turn != nil {
			r.mixedAt = r.batches
		}
		r.turn, r.inTurn = a, 0
	}
	if r.inTurn++; r.inTurn >= turnQuantum {
		r.inTurn = 0
		if r.batches-r.mixedAt < turnMemory {
			a.waitTurn = true
			r.list(a)
		}
	}
}

// endTurns is called once the reader has looked through the whole queue:
// the peers that had their turn may go on. It reports whether there were
// any. The caller holds mu.
func (r *rxCredit) endTurns() bool {
	ended := false
	for _, a := range r.holds {
		if a.waitTurn {
			a.waitTurn, ended = false, true
		}
	}
	return ended
}

// count records n bytes handed over for a and, once per creditCheck,
// blocks a if its connection is past creditLimit. Not at one P, where the
// reader's yields keep quic-go's queue short (a version that compared
// there too read slightly slower in -against, BENCHMARKS.md, round
// fourteen). The caller holds mu.
func (r *rxCredit) count(a *rxAccount, n int) {
	if a.conn == nil {
		return
	}
	a.handed += uint64(n)
	if a.unchecked += n; a.unchecked < creditCheck {
		return
	}
	a.unchecked = 0
	if runtime.GOMAXPROCS(0) > 1 {
		if taken := a.conn.ConnectionStats().BytesReceived; int64(a.handed-taken) > creditLimit {
			if taken != a.taken {
				a.gaveUp = false
			}
			a.blocked, a.taken, a.since = true, taken, time.Now()
			r.list(a)
		}
	}
}

// release hands over, into ms, the held packets of the peers whose
// connections caught up or were given up on, oldest first, as far as the
// credit and ms allow, and returns how many it put there; the reader's,
// under mu.
func (r *rxCredit) release(ms []ipv4.Message, rel *releaser) int {
	i := 0
	var now time.Time
	keep := r.holds[:0]
	for _, a := range r.holds {
		if a.blocked {
			r.recheck(a, &now)
		}
		for !a.blocked && !a.waitTurn && a.holding() && i < len(ms) {
			pkt := a.held[a.next]
			a.held[a.next] = queuedPacket{}
			a.next++
			r.nheld--
			putMessage(&ms[i], pkt, rel)
			i++
			r.served(a)
			r.count(a, len(pkt.b)) // may block a again: the rest wait
		}
		if a.blocked || a.waitTurn || a.holding() {
			keep = append(keep, a)
			continue
		}
		a.listed = false
		if a.next = 0; a.held != nil && cap(a.held) <= spareHeldCap && len(r.spare) < spareHeld {
			r.spare = append(r.spare, a.held[:0]) // its packets were cleared as they went
		}
		a.held = nil
	}
	clear(r.holds[len(keep):])
	r.holds = keep
	return i
}

// recheck unblocks a if its connection caught up, left or closed, or if
// it took nothing for creditGiveUp, forgetting then what it counted.
func (r *rxCredit) recheck(a *rxAccount, now *time.Time) {
	if a.conn == nil {
		a.blocked = false
		return
	}
	taken := a.conn.ConnectionStats().BytesReceived
	if int64(a.handed-taken) <= creditLimit {
		a.blocked = false
		return
	}
	select {
	case <-a.conn.Context().Done():
		a.blocked = false // it takes nothing more; remove forgets it
		return
	default:
	}
	if now.IsZero() {
		*now = time.Now()
	}
	wait := creditGiveUp
	if a.gaveUp {
		wait = creditGiveUpAgain
	}
	if taken != a.taken {
		a.taken, a.since, a.gaveUp = taken, *now, false
	} else if now.Sub(a.since) >= wait {
		a.handed = taken + (a.handed-taken)/2
		a.blocked, a.since, a.gaveUp = false, *now, true
	}
}

// drop gives back the buffers of every held packet: the conn closed.
func (r *rxCredit) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.holds {
		for _, p := range a.held[a.next:] {
			p.release()
		}
		a.held, a.next, a.listed = nil, 0, false
	}
	r.holds, r.nheld = nil, 0
	r.waiting.Store(false)
}

// wrote tells a reader holding packets back that a connection sent: it
// may have taken packets off its queue.
func (r *rxCredit) wrote() {
	if r.waiting.Load() {
		select {
		case r.progress <- struct{}{}:
		default:
		}
	}
}

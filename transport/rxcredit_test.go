package transport

import (
	"context"
	"encoding/binary"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
)

// creditConn is an innerConn with only what its reader uses: a queue and
// the accounts.
func creditConn() *innerConn {
	return &innerConn{queueConn: newQueueConn(4096, nil, nil), credit: newRxCredit()}
}

// creditPeers runs the test at procs Ps and returns a reader's side and n
// peers, each with a connection that takes none of the packets queued
// here; it adds no account.
func creditPeers(t *testing.T, procs, n int) (*innerConn, []Endpoint, []*quic.Conn) {
	t.Helper()
	prev := runtime.GOMAXPROCS(procs)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	var eps []Endpoint
	var conns []*quic.Conn
	for range n {
		dev, _, conn := modePair(t, ctx, PathRelay)
		eps, conns = append(eps, dev.Endpoint()), append(conns, conn)
	}
	return creditConn(), eps, conns
}

// batch is quic-go's batch of eight messages, each with a buffer.
func batch() []ipv4.Message {
	ms := make([]ipv4.Message, 8)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, packetBufSize)}
	}
	return ms
}

// queueNumbered queues n packets of innerPacketSize from ep, numbered
// from first.
func queueNumbered(c *innerConn, ep Endpoint, first, n int) {
	pkts := make([]queuedPacket, n)
	for i := range pkts {
		buf := packetBufs.Get().(*[]byte)
		binary.BigEndian.PutUint64((*buf)[:8], uint64(ep))
		binary.BigEndian.PutUint32((*buf)[8:12], uint32(first+i))
		pkts[i] = ownPacket(buf, innerPacketSize, EndpointAddr(ep))
	}
	c.deliverRun(pkts)
}

// takenPacket is a packet the reader handed over: whose, and its number.
type takenPacket struct {
	ep  Endpoint
	seq int
}

// fillAll takes what fill hands over without waiting, batch by batch,
// until it hands nothing; it reports whether packets are still held.
func fillAll(t *testing.T, c *innerConn) ([]takenPacket, bool) {
	t.Helper()
	var got []takenPacket
	ms := batch()
	for {
		n, holding, err := c.fill(ms)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return got, holding
		}
		c.queued.Add(int32(-n))
		for _, m := range ms[:n] {
			b := m.Buffers[0][:m.N]
			ep, _ := AddrEndpoint(m.Addr)
			if m.N != innerPacketSize || Endpoint(binary.BigEndian.Uint64(b)) != ep {
				t.Fatalf("handed over %d bytes from %v, not a packet queued", m.N, m.Addr)
			}
			got = append(got, takenPacket{ep, int(binary.BigEndian.Uint32(b[8:12]))})
		}
	}
}

// inOrder checks that each peer's packets were handed over in the order
// they were queued, from 0, and counts them.
func inOrder(t *testing.T, got []takenPacket) map[Endpoint]int {
	t.Helper()
	next := map[Endpoint]int{}
	for _, p := range got {
		if p.seq != next[p.ep] {
			t.Fatalf("packet %d of %v handed over when %d was due", p.seq, p.ep, next[p.ep])
		}
		next[p.ep]++
	}
	return next
}

// One busy peer holds back only its own packets: once its connection is
// creditLimit behind, the reader keeps the peer's later packets and hands
// over another peer's queued behind them, and each peer's packets still
// reach quic-go in order. A connection that leaves gets what was held for
// it at the next batch.
func TestCreditHoldsOnlyTheBusyPeer(t *testing.T) {
	c, eps, conns := creditPeers(t, 2, 2) // at one P the count holds nobody back
	a, b, busyConn := eps[0], eps[1], conns[0]
	c.credit.add(a, busyConn)
	c.credit.add(b, conns[1])

	queueNumbered(c, a, 0, 200)
	queueNumbered(c, b, 0, 20)
	queueNumbered(c, a, 200, 20)
	got, holding := fillAll(t, c)
	n := inOrder(t, got)
	// Blocked at the first comparison past creditLimit.
	wantBusy := (creditLimit + creditCheck) / innerPacketSize
	if n[a] != wantBusy || n[b] != 20 || !holding {
		t.Fatalf("handed over %d of the busy peer's packets and %d of the other's, holding %v; want %d, 20 and holding",
			n[a], n[b], holding, wantBusy)
	}
	if c.credit.nheld != 220-wantBusy || int(c.queued.Load()) != c.credit.nheld {
		t.Fatalf("%d packets held, %d counted in the queue; want %d in both", c.credit.nheld, c.queued.Load(), 220-wantBusy)
	}

	// Its later packets queue behind the held ones.
	queueNumbered(c, a, 220, 5)
	queueNumbered(c, b, 20, 5)
	more, _ := fillAll(t, c)
	got = append(got, more...)
	if n := inOrder(t, got); n[a] != wantBusy || n[b] != 25 {
		t.Fatalf("then handed over %d and %d; want %d and 25", n[a], n[b], wantBusy)
	}

	c.credit.remove(a, busyConn)
	more, holding = fillAll(t, c)
	got = append(got, more...)
	if n := inOrder(t, got); n[a] != 225 || holding || c.credit.nheld != 0 || c.queued.Load() != 0 {
		t.Fatalf("after the busy connection left: %d of its 225 packets handed over, holding %v (%d), %d queued",
			n[a], holding, c.credit.nheld, c.queued.Load())
	}
}

// A count that went wrong delays the reader and never stalls it: bytes
// counted for a connection that never takes them (here, packets that never
// reach quic-go) hold its peer back for a while at a time, and half of
// them are forgotten each time; the held packets go in order.
func TestCreditGivesUp(t *testing.T) {
	c, eps, conns := creditPeers(t, 2, 1)
	ep := eps[0]
	c.credit.add(ep, conns[0])
	queueNumbered(c, ep, 0, 1000)
	var got []takenPacket
	ms := batch()
	done := make(chan error, 1)
	go func() {
		for len(got) < 1000 {
			n, err := c.ReadBatch(ms, 0)
			if err != nil {
				done <- err
				return
			}
			for _, m := range ms[:n] {
				got = append(got, takenPacket{ep, int(binary.BigEndian.Uint32(m.Buffers[0][8:12]))})
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		c.Close()
		<-done
		t.Fatalf("the reader still holds packets for a connection that never takes them (%d of 1000 handed over)", len(got))
	}
	inOrder(t, got)
}

// A connection that takes nothing for a while (its goroutine gets no CPU)
// is let go once in creditGiveUpAgain, and is not handed more than
// quic-go's queue of 256 packets holds meanwhile; what its peer holds
// beyond maxHeld is dropped.
func TestCreditNeverOverfills(t *testing.T) {
	c, eps, conns := creditPeers(t, 2, 1)
	ep := eps[0]
	c.credit.add(ep, conns[0])
	const queued = 3000
	queueNumbered(c, ep, 0, queued)
	var got []takenPacket
	for range 3 {
		more, _ := fillAll(t, c)
		got = append(got, more...)
		time.Sleep(creditGiveUp + creditGiveUp/2)
	}
	n := inOrder(t, got)[ep]
	if n <= (creditLimit+creditCheck)/innerPacketSize || n > 256 {
		t.Fatalf("handed over %d packets to a connection that took none; want it let go once, within 256", n)
	}
	if c.credit.nheld > maxHeld || int(c.queued.Load()) != c.credit.nheld || n+c.credit.nheld == queued {
		t.Fatalf("%d packets held, %d counted in the queue, %d handed over of %d; want at most %d (maxHeld) held, as many queued, the rest dropped",
			c.credit.nheld, c.queued.Load(), n, queued, maxHeld)
	}
}

// A hold that never empties — packets keep arriving as the held ones go —
// does not grow its array without bound.
func TestCreditHeldStaysSmall(t *testing.T) {
	c, eps, conns := creditPeers(t, 2, 1)
	ep := eps[0]
	r := c.credit
	r.add(ep, conns[0])
	a := r.accts[ep]
	ms := batch()
	var rel releaser
	seq := 0
	for i := range 1000 {
		r.mu.Lock()
		a.blocked = true
		n := 8
		if i == 0 {
			n++ // one more the first time: the hold never empties
		}
		for range n {
			buf := packetBufs.Get().(*[]byte)
			binary.BigEndian.PutUint32((*buf)[8:12], uint32(seq))
			seq++
			if r.admit(ownPacket(buf, innerPacketSize, EndpointAddr(ep))) != admitHold {
				t.Fatal("a blocked peer's packet was not held")
			}
		}
		a.blocked, a.unchecked = false, 0
		r.release(ms, &rel)
		r.mu.Unlock()
		rel.flush()
	}
	if len(a.held)-a.next != 1 || cap(a.held) > 64 {
		t.Fatalf("after 8,000 packets held and handed over, 8 at a time: held list of %d (want 1), array of %d", len(a.held)-a.next, cap(a.held))
	}
}

// While two peers send, each takes turns of turnQuantum packets: a
// neighbour's packets queued behind a busy peer's backlog are handed over
// after one turn of it, not after the whole backlog (at one P too, where
// the count holds nobody back). A peer alone is never made to wait.
func TestCreditTakesTurns(t *testing.T) {
	c, eps, conns := creditPeers(t, 1, 2)
	a, b := eps[0], eps[1]
	c.credit.add(a, conns[0])
	c.credit.add(b, conns[1])

	queueNumbered(c, a, 0, 1000)
	ms := batch()
	for taken := 0; taken < 1000; {
		n, holding, err := c.fill(ms)
		if err != nil || n == 0 || holding {
			t.Fatalf("a peer alone, after %d packets: fill handed %d, holding %v, %v", taken, n, holding, err)
		}
		c.queued.Add(int32(-n))
		taken += n
	}

	queueNumbered(c, b, 0, 5)
	queueNumbered(c, a, 1000, 5)
	first, _ := fillAll(t, c)
	queueNumbered(c, a, 1005, 300)
	queueNumbered(c, b, 5, 10)
	queueNumbered(c, a, 1305, 50)
	got, holding := fillAll(t, c)
	next := map[Endpoint]int{a: 1000, b: 0}
	for _, p := range append(first, got...) {
		if p.seq != next[p.ep] {
			t.Fatalf("packet %d of %v handed over when %d was due", p.seq, p.ep, next[p.ep])
		}
		next[p.ep]++
	}
	if next[a] != 1355 || next[b] != 15 || holding {
		t.Fatalf("handed over %d and %d, holding %v; want all 355 and 15", next[a]-1000, next[b], holding)
	}
	// Behind the busy peer's backlog of 300, after at most one turn.
	at := slices.IndexFunc(got, func(p takenPacket) bool { return p.ep == b })
	if at >= 300 || at > turnQuantum {
		t.Fatalf("the neighbour's packets were handed over after %d of the busy peer's; want at most a turn, %d", at, turnQuantum)
	}
}

// At one P the reader never holds a peer back: its yields keep quic-go's
// queue short there.
func TestCreditOneP(t *testing.T) {
	c, eps, conns := creditPeers(t, 1, 1)
	ep := eps[0]
	c.credit.add(ep, conns[0])
	queueNumbered(c, ep, 0, 500)
	got, holding := fillAll(t, c)
	if n := inOrder(t, got); n[ep] != 500 || holding {
		t.Fatalf("at one P: %d of 500 handed over, holding %v", n[ep], holding)
	}
}

// An endpoint with more than one connection is not counted: which one
// quic-go hands its packets to is not known here.
func TestCreditSharedEndpoint(t *testing.T) {
	c, eps, conns := creditPeers(t, 2, 2)
	r, ep, conn, other := c.credit, eps[0], conns[0], conns[1]
	r.add(ep, conn)
	r.add(ep, other)
	before := r.accts[ep].handed
	queueNumbered(c, ep, 0, 500)
	got, holding := fillAll(t, c)
	if a := r.accts[ep]; a.conn != nil || a.handed != before || len(got) != 500 || holding {
		t.Fatalf("account of a shared endpoint: conn %v, %d bytes counted, %d of 500 handed over, holding %v",
			a.conn, a.handed-before, len(got), holding)
	}
	r.remove(ep, other)
	if a := r.accts[ep]; a == nil || a.conn != nil {
		t.Fatalf("after one of two left: %+v, want an account that counts nothing", a)
	}
	r.remove(ep, conn)
	if _, ok := r.accts[ep]; ok {
		t.Fatal("account kept after its last connection left")
	}
}

package transport

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// What a stranger can make a device send, measured at sockets the stranger
// controls; the nodes run on loopback, the relay too, so every 127.0.0.x
// address is in their scope and only the rules under test keep packets
// away.

// sink is a UDP socket of the test's that counts the datagrams reaching it
// by their first byte.
type sink struct {
	conn *net.UDPConn
	addr netip.AddrPort

	mu  sync.Mutex
	got map[byte]int
}

func listenSink(t testing.TB, ip string) *sink {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{conn: c, addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), got: make(map[byte]int)}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n > 0 {
				s.mu.Lock()
				s.got[buf[0]]++
				s.mu.Unlock()
			}
		}
	}()
	return s
}

// count returns the datagrams of type typ received so far; typ 0 counts
// all.
func (s *sink) count(typ byte) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if typ != 0 {
		return s.got[typ]
	}
	n := 0
	for _, k := range s.got {
		n += k
	}
	return n
}

func sinkAddrs(ss []*sink) []netip.AddrPort {
	out := make([]netip.AddrPort, len(ss))
	for i, s := range ss {
		out[i] = s.addr
	}
	return out
}

func countAll(ss []*sink, typ byte) int {
	n := 0
	for _, s := range ss {
		n += s.count(typ)
	}
	return n
}

// acceptConns accepts end-to-end connections on nd and hands them over;
// with authorize, each is authorized as it is accepted (a policy the key
// alone passes). The connections close when the test ends.
func acceptConns(t *testing.T, nd *Node, authorize bool) <-chan *quic.Conn {
	t.Helper()
	ln, err := nd.ListenPeers()
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan *quic.Conn, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			if authorize {
				nd.Authorized(c)
			}
			select {
			case out <- c:
			default:
			}
		}
	}()
	return out
}

// craftPing returns a fresh ping from node from to its peer at ep, as
// from's path discovery would send it to to: someone who sees it on the
// wire has these very bytes.
func craftPing(t *testing.T, from *Node, ep Endpoint, to netip.AddrPort) []byte {
	t.Helper()
	from.pathMu.RLock()
	p := from.paths[ep]
	from.pathMu.RUnlock()
	if p == nil {
		t.Fatal("no path to the peer")
	}
	m, secret, ok := p.sent(to, time.Now())
	if !ok {
		t.Fatal("no authorized connection to the peer")
	}
	m.src = from.endpoint
	return appendDisco(nil, m, secret)
}

// A stranger connects to a device, offers as candidates two sockets it
// controls, and pings the device from one of them. The device lets none
// of its streams in, so the stranger gets nothing: no probe at its
// candidates, no pong. The same stranger, once authorized, gets both —
// the sockets would have seen them.
func TestStrangerGetsNoDiscoPackets(t *testing.T) {
	tn := newTestNet(t)
	dev, stranger := tn.node(t), tn.node(t)
	stranger.SetMode(PathRelay) // it speaks for itself below
	accepted := acceptConns(t, dev, false)
	sinks := []*sink{listenSink(t, "127.0.0.2"), listenSink(t, "127.0.0.3")}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := stranger.DialPeer(ctx, dev.Key().ID(), dev.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	var devConn *quic.Conn
	select {
	case devConn = <-accepted:
	case <-ctx.Done():
		t.Fatal("device accepted nothing")
	}
	cands := appendCandidates(nil, sinkAddrs(sinks))
	const window = 3 * time.Second
	start := time.Now()
	pings := 0
	for time.Since(start) < window {
		if err := conn.SendDatagram(cands); err != nil {
			t.Fatal(err)
		}
		sinks[0].conn.WriteToUDPAddrPort(craftPing(t, stranger, dev.Endpoint(), dev.LocalAddr()), dev.LocalAddr())
		pings++
		time.Sleep(250 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // the last answers, if any
	elapsed := time.Since(start)
	got := countAll(sinks, 0)
	t.Logf("unauthorized: %d datagrams at %d candidates in %v (%.2f/s per candidate), answering %d pings (%d pongs)",
		got, len(sinks), elapsed.Round(time.Millisecond), float64(got)/elapsed.Seconds()/float64(len(sinks)),
		pings, countAll(sinks, frameDiscoPong))
	if got != 0 {
		t.Fatalf("a stranger got %d packets from the device at addresses of its choice", got)
	}
	dev.pathMu.RLock()
	_, isSource := dev.byAddr[sinks[0].addr]
	dev.pathMu.RUnlock()
	if isSource {
		t.Fatal("a stranger's ping made its address a data source")
	}
	if c := remoteOf(stranger, dev.Endpoint()); len(c) != 0 {
		t.Fatalf("the device told a stranger its addresses: %v", c)
	}

	// Control: authorized, the same peer is probed and answered, and
	// told the device's candidates.
	dev.Authorized(devConn)
	dev.Authorized(devConn) // twice is harmless
	for time.Since(start) < window+5*time.Second {
		sinks[0].conn.WriteToUDPAddrPort(craftPing(t, stranger, dev.Endpoint(), dev.LocalAddr()), dev.LocalAddr())
		if countAll(sinks, frameDiscoPing) > 0 && sinks[0].count(frameDiscoPong) > 0 && len(remoteOf(stranger, dev.Endpoint())) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if p, q, c := countAll(sinks, frameDiscoPing), sinks[0].count(frameDiscoPong), remoteOf(stranger, dev.Endpoint()); p == 0 || q == 0 || len(c) == 0 {
		t.Fatalf("once authorized: %d pings at the candidates, %d pongs, candidates %v; want all", p, q, c)
	}
	conn.CloseWithError(0, "")
	waitUntil(t, 5*time.Second, func() bool {
		dev.pathMu.RLock()
		defer dev.pathMu.RUnlock()
		return len(dev.conns) == 0
	})
	dev.Authorized(devConn) // after close: harmless
}

// remoteOf returns the candidates n holds for its peer at ep.
func remoteOf(n *Node, ep Endpoint) []netip.AddrPort {
	n.pathMu.RLock()
	p := n.paths[ep]
	n.pathMu.RUnlock()
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.remote)
}

// A peer's candidates are kept only in the node's scope, and its pings
// count only from there: out of it, nothing is probed or answered.
func TestDiscoStaysInScope(t *testing.T) {
	tn := newTestNet(t)
	dev, peer := tn.node(t), tn.node(t)
	peer.SetMode(PathRelay) // it speaks for itself below
	acceptConns(t, dev, true)
	sink := listenSink(t, "127.0.0.2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := peer.DialPeer(ctx, dev.Key().ID(), dev.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	// Out of scope anywhere: link-local, broadcast (the parser keeps
	// them, the scope does not).
	offer := []netip.AddrPort{
		netip.MustParseAddrPort("169.254.1.1:9"), sink.addr, netip.MustParseAddrPort("255.255.255.255:9"),
		netip.MustParseAddrPort("[fe80::1]:9"), netip.MustParseAddrPort("127.255.255.255:9"),
	}
	waitUntil(t, 5*time.Second, func() bool {
		conn.SendDatagram(appendCandidates(nil, offer))
		time.Sleep(20 * time.Millisecond)
		return len(remoteOf(dev, peer.Endpoint())) > 0
	})
	if got := remoteOf(dev, peer.Endpoint()); !slices.Equal(got, []netip.AddrPort{sink.addr}) {
		t.Fatalf("candidates kept %v, want only %v", got, sink.addr)
	}
	// In scope, a ping from there is answered.
	waitUntil(t, 5*time.Second, func() bool {
		sink.conn.WriteToUDPAddrPort(craftPing(t, peer, dev.Endpoint(), dev.LocalAddr()), dev.LocalAddr())
		time.Sleep(20 * time.Millisecond)
		return sink.count(frameDiscoPong) > 0
	})
	// The device's home relay moves off loopback (the peer's frames
	// still come through the one on loopback): loopback leaves its scope.
	// Candidates there are dropped, pings from there go unanswered.
	dev.SetRoutes(RelayRoute{Addr: netip.MustParseAddrPort("198.51.100.1:7443")},
		map[Endpoint]RelayRoute{peer.Endpoint(): {Addr: tn.relayAddr}})
	waitUntil(t, 5*time.Second, func() bool {
		conn.SendDatagram(appendCandidates(nil, offer))
		time.Sleep(20 * time.Millisecond)
		return len(remoteOf(dev, peer.Endpoint())) == 0
	})
	before := sink.count(frameDiscoPong)
	sink.conn.WriteToUDPAddrPort(craftPing(t, peer, dev.Endpoint(), dev.LocalAddr()), dev.LocalAddr())
	time.Sleep(300 * time.Millisecond)
	if n := sink.count(frameDiscoPong) - before; n != 0 {
		t.Fatalf("%d pongs to an address out of scope", n)
	}
}

// Someone who sees a ping on the wire and sends it again from elsewhere
// gets no pong, and its address carries no data into the node.
func TestReplayedPingGetsNothing(t *testing.T) {
	tn := newTestNet(t)
	dev, cli := tn.node(t), tn.node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := dialEcho(t, ctx, cli, dev)
	echoOver(t, ctx, conn, 1<<10, "to authorize")
	if err := dev.WaitDirect(ctx, cli.Endpoint()); err != nil {
		t.Fatal(err)
	}
	replayer := listenSink(t, "127.0.0.2")
	ping := craftPing(t, cli, dev.Endpoint(), dev.LocalAddr())
	// The genuine ping, from the client's own socket, then the copy.
	if err := cli.sock.WriteTo(ping, dev.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	replayer.conn.WriteToUDPAddrPort(ping, dev.LocalAddr())
	time.Sleep(500 * time.Millisecond)
	if n := replayer.count(0); n != 0 {
		t.Fatalf("the replayer got %d packets (%d pongs)", n, replayer.count(frameDiscoPong))
	}
	// Direct frames are taken only from the addresses in byAddr.
	dev.pathMu.RLock()
	p := dev.paths[cli.Endpoint()]
	_, isSource := dev.byAddr[replayer.addr]
	dev.pathMu.RUnlock()
	p.mu.Lock()
	seen := slices.Contains(p.seen, replayer.addr)
	p.mu.Unlock()
	if isSource || seen {
		t.Fatalf("the replayer's address: data source %v, among the peer's addresses %v", isSource, seen)
	}
	// The genuine ping was answered, the connection still works.
	echoOver(t, ctx, conn, 1<<10, "after the replay")
}

func waitUntil(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// forwarder carries datagrams between two nodes the way a NAT on the path
// would: what reaches near goes out of far to one node, what reaches far
// goes out of near to the other. With drop set it black-holes direct data
// frames and lets pings and pongs through; with maxSize set it drops every
// datagram larger, as a path with a small MTU whose ICMP is filtered does.
type forwarder struct {
	near, far  *net.UDPConn
	drop       atomic.Bool
	dropped    atomic.Int64
	maxSize    atomic.Int64
	droppedBig atomic.Int64
}

// newForwarder forwards what reaches near to b (from far) and what
// reaches far to a (from near).
func newForwarder(t *testing.T, a, b netip.AddrPort) *forwarder {
	t.Helper()
	listen := func(ip string) *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f := &forwarder{near: listen("127.0.0.2"), far: listen("127.0.0.3")}
	var wg sync.WaitGroup
	t.Cleanup(func() { f.near.Close(); f.far.Close(); wg.Wait() })
	pump := func(in, out *net.UDPConn, to netip.AddrPort) {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			n, _, err := in.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if n > 0 && buf[0] == frameDirect && f.drop.Load() {
				f.dropped.Add(1)
				continue
			}
			if m := f.maxSize.Load(); m > 0 && int64(n) > m {
				f.droppedBig.Add(1)
				continue
			}
			out.WriteToUDPAddrPort(buf[:n], to)
		}
	}
	wg.Add(2)
	go pump(f.near, f.far, b)
	go pump(f.far, f.near, a)
	return f
}

// forwardedPair starts two nodes on one relay whose only direct path
// crosses a forwarder (dropping datagrams over maxSize bytes if it is not
// 0), dials an echo connection from cli to dev, and returns once the
// connection runs direct through the forwarder both ways.
func forwardedPair(t *testing.T, ctx context.Context, maxSize int64) (dev, cli *Node, f *forwarder, conn *quic.Conn) {
	t.Helper()
	tn := newTestNet(t)
	dev, cli = tn.node(t), tn.node(t)
	f = newForwarder(t, cli.LocalAddr(), dev.LocalAddr())
	f.maxSize.Store(maxSize)
	// Each node is reached only through the forwarder.
	dev.testCandidates = func() []netip.AddrPort { return []netip.AddrPort{f.nearAddr()} }
	cli.testCandidates = func() []netip.AddrPort { return []netip.AddrPort{f.farAddr()} }
	conn = dialEcho(t, ctx, cli, dev)
	echoOver(t, ctx, conn, 1<<10, "to authorize")
	waitUntil(t, 10*time.Second, func() bool {
		return directVia(cli) == f.nearAddr() && directVia(dev) == f.farAddr()
	})
	return dev, cli, f, conn
}

func (f *forwarder) nearAddr() netip.AddrPort { return f.near.LocalAddr().(*net.UDPAddr).AddrPort() }
func (f *forwarder) farAddr() netip.AddrPort  { return f.far.LocalAddr().(*net.UDPAddr).AddrPort() }

// directVia returns the peer address n's one connection uses, invalid when
// it is relayed.
func directVia(n *Node) netip.AddrPort {
	ps := n.Peers()
	if len(ps) != 1 {
		return netip.AddrPort{}
	}
	return ps[0].Direct
}

// The only direct path between two nodes crosses a forwarder that, once
// the path is in use, drops every data frame and lets pings and pongs
// through. Pongs alone would keep the path (before the liveness rule it
// stayed until QUIC's idle timeout closed the connection, 45 s); what the
// pongs say reached the peer does not. The client, whose stream runs into
// the hole, leaves it within three heartbeats and a round trip; the
// device, whose only traffic into it is acknowledgements of what reaches
// it over the relay, as those trickle in (disco.go, "Liveness"); the
// streams carry on.
func TestBlackHoledPathIsLeft(t *testing.T) {
	for _, tt := range []struct {
		name string
		size int // of the echo that runs into the black hole
	}{
		{"bulk", 1 << 20},
		{"a few bytes", 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dev, cli, f, conn := forwardedPair(t, ctx, 0)
			echoOver(t, ctx, conn, 1<<20, "through the forwarder")

			f.drop.Store(true)
			start := time.Now()
			done := make(chan error, 1)
			go func() { done <- echo(ctx, conn, tt.size) }()
			var cliLeft, devLeft time.Duration
			for cliLeft == 0 || devLeft == 0 {
				if time.Since(start) > 15*time.Second {
					t.Fatalf("after %v the black hole is still in use: client %v, device %v, %d frames dropped",
						time.Since(start).Round(time.Millisecond), directVia(cli), directVia(dev), f.dropped.Load())
				}
				if cliLeft == 0 && !directVia(cli).IsValid() {
					cliLeft = time.Since(start)
				}
				if devLeft == 0 && !directVia(dev).IsValid() {
					devLeft = time.Since(start)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if err := <-done; err != nil {
				t.Fatalf("echo across the switch: %v", err)
			}
			echoed := time.Since(start)
			t.Logf("black hole left by the client after %v, by the device after %v; echo of %d bytes done after %v; %d frames dropped",
				cliLeft.Round(time.Millisecond), devLeft.Round(time.Millisecond), tt.size, echoed.Round(time.Millisecond), f.dropped.Load())
			// The client sends first; the device may have nothing to send
			// into the hole until the request reached it over the relay.
			if bound := 3*pathHeartbeat + time.Second; cliLeft > bound {
				t.Errorf("client left after %v, want within %v", cliLeft, bound)
			}
			// The hole stays left: the address is barred for deadHold.
			echoOver(t, ctx, conn, 1<<16, "after the switch")
			if a, b := directVia(cli), directVia(dev); a.IsValid() || b.IsValid() {
				t.Fatalf("the black hole was taken again: client %v, device %v", a, b)
			}
		})
	}
}

// Many connections, each offering 16 addresses that never answer, get no
// more probes out of a node than its budget.
func TestProbeBudgetHolds(t *testing.T) {
	tn := newTestNet(t)
	dev := tn.node(t)
	acceptConns(t, dev, true)
	sinks := make([]*sink, maxCandidates)
	for i := range sinks {
		sinks[i] = listenSink(t, "127.0.0.2")
	}
	cands := appendCandidates(nil, sinkAddrs(sinks))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const conns = 12
	start := time.Now()
	for range conns {
		s := tn.node(t)
		s.SetMode(PathRelay)
		c, err := s.DialPeer(ctx, dev.Key().ID(), dev.Endpoint())
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseWithError(0, "")
		for range 2 { // a lost datagram would only lower the demand
			if err := c.SendDatagram(cands); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(3*time.Second - time.Since(start))
	elapsed := time.Since(start)
	got := countAll(sinks, frameDiscoPing)
	limit := probeBurst + int(probeRate*elapsed.Seconds()) + 1
	t.Logf("%d connections × %d candidates: %d pings in %v (%.0f/s); budget %d",
		conns, len(sinks), got, elapsed.Round(time.Millisecond), float64(got)/elapsed.Seconds(), limit)
	if got > limit {
		t.Fatalf("%d pings in %v, over the budget of %d", got, elapsed, limit)
	}
	// The demand (12 × 16 per round, rounds 250 ms apart at first) is
	// far above the budget: the budget is what held.
	if got < probeBurst {
		t.Fatalf("only %d pings: the probes did not run", got)
	}
}

package transport

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

var (
	addr6A = netip.MustParseAddrPort("[2001:db8:1::2]:41641")
	addr6B = netip.MustParseAddrPort("[2001:db8:2::2]:41641")
)

func TestBetterPath(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name    string
		a       netip.AddrPort
		rtt     time.Duration
		best    netip.AddrPort
		bestRTT time.Duration
		want    bool
	}{
		{"IPv6 as fast as IPv4 wins", addr6A, 10 * ms, addrA, 10 * ms, true},
		{"IPv6 slower within the margin wins", addr6A, 10*ms + preferIPv6Within, addrA, 10 * ms, true},
		{"IPv6 slower beyond the margin loses", addr6A, 10*ms + preferIPv6Within + 1, addrA, 10 * ms, false},
		{"IPv4 as fast as IPv6 loses", addrA, 10 * ms, addr6A, 10 * ms, false},
		{"IPv4 faster, but not by the margin and a fifth, loses", addrA, 9 * ms, addr6A, 20 * ms, false},
		{"IPv4 much faster wins", addrA, 5 * ms, addr6A, 30 * ms, true},
		{"IPv4-mapped counts as IPv4", netip.MustParseAddrPort("[::ffff:192.0.2.9]:1"), 10 * ms, addr6A, 10 * ms, false},
		{"within IPv6, 80 % rule: 90 % stays", addr6B, 9 * ms, addr6A, 10 * ms, false},
		{"within IPv6, 80 % rule: 70 % switches", addr6B, 7 * ms, addr6A, 10 * ms, true},
		{"within IPv4, 80 % rule: 90 % stays", addrB, 9 * ms, addrA, 10 * ms, false},
		{"within IPv4, 80 % rule: 70 % switches", addrB, 7 * ms, addrA, 10 * ms, true},
	}
	for _, tt := range tests {
		if got := betterPath(tt.a, tt.rtt, tt.best, tt.bestRTT); got != tt.want {
			t.Errorf("%s: betterPath(%v %v, %v %v) = %v", tt.name, tt.a, tt.rtt, tt.best, tt.bestRTT, got)
		}
	}
	// No pair of RTTs makes both families better than the other: the path
	// cannot flap between them.
	for v4 := time.Duration(0); v4 <= 100*ms; v4 += ms / 2 {
		for v6 := time.Duration(0); v6 <= 100*ms; v6 += ms / 2 {
			if betterPath(addr6A, v6, addrA, v4) && betterPath(addrA, v4, addr6A, v6) {
				t.Fatalf("IPv6 at %v and IPv4 at %v each beat the other", v6, v4)
			}
		}
	}
}

// Both families are pinged in one round; the first pong of either confirms
// the path at once, and the other's, when it comes, decides between them.
func TestPathHappyEyeballs(t *testing.T) {
	const ms = time.Millisecond
	tests := []struct {
		name string
		rtt4 time.Duration // of addrA
		rtt6 time.Duration // of addr6A
		want netip.AddrPort
	}{
		{"IPv4 first, IPv6 just behind: IPv6", 10 * ms, 11 * ms, addr6A},
		{"IPv4 first, IPv6 within the margin: IPv6", 8 * ms, 8*ms + preferIPv6Within, addr6A},
		{"IPv4 first, IPv6 much slower: IPv4", 10 * ms, 40 * ms, addrA},
		{"IPv6 first: IPv6", 10 * ms, 5 * ms, addr6A},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPath()
			m4, m6 := ping(t, p, addrA, t0), ping(t, p, addr6A, t0)
			type pong struct {
				m    discoMsg
				from netip.AddrPort
				at   time.Time
			}
			pongs := []pong{{m4, addrA, t0.Add(tt.rtt4)}, {m6, addr6A, t0.Add(tt.rtt6)}}
			if tt.rtt6 < tt.rtt4 {
				pongs[0], pongs[1] = pongs[1], pongs[0]
			}
			if !answer(p, pongs[0].m, counts{}, pongs[0].from, pongs[0].at).confirmed {
				t.Fatal("the first pong did not confirm the path")
			}
			if a, ok := p.current(pongs[0].at); !ok || a != pongs[0].from {
				t.Fatalf("after the first pong: %v %v, want %v: no waiting for the other family", a, ok, pongs[0].from)
			}
			answer(p, pongs[1].m, counts{}, pongs[1].from, pongs[1].at)
			if a, ok := p.current(pongs[1].at); !ok || a != tt.want {
				t.Fatalf("after both pongs: %v %v, want %v", a, ok, tt.want)
			}
		})
	}
}

func TestInterleaveFamilies(t *testing.T) {
	v4 := func(i int) netip.AddrPort { return netip.MustParseAddrPort(fmt.Sprintf("198.51.100.%d:1", i)) }
	v6 := func(i int) netip.AddrPort { return netip.MustParseAddrPort(fmt.Sprintf("[2001:db8::%d]:1", i)) }
	tests := []struct{ in, want []netip.AddrPort }{
		{nil, nil},
		{[]netip.AddrPort{v4(1)}, []netip.AddrPort{v4(1)}},
		{[]netip.AddrPort{v4(1), v4(2), v4(3)}, []netip.AddrPort{v4(1), v4(2), v4(3)}},
		{[]netip.AddrPort{v4(1), v4(2), v6(1), v6(2)}, []netip.AddrPort{v4(1), v6(1), v4(2), v6(2)}},
		{[]netip.AddrPort{v6(1), v4(1), v4(2), v4(3)}, []netip.AddrPort{v6(1), v4(1), v4(2), v4(3)}},
		{[]netip.AddrPort{v4(1), v4(2), v4(3), v6(1)}, []netip.AddrPort{v4(1), v6(1), v4(2), v4(3)}},
	}
	for _, tt := range tests {
		if got := interleaveFamilies(slices.Clone(tt.in)); !slices.Equal(got, tt.want) {
			t.Errorf("interleaveFamilies(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// A round capped at maxPingsPerRound holds both families even when one
// family's candidates alone would fill it.
func TestProbeRoundBothFamilies(t *testing.T) {
	p := testPath()
	for i := range maxCandidates - 1 {
		p.remote = append(p.remote, netip.MustParseAddrPort(fmt.Sprintf("198.51.100.%d:41641", i)))
	}
	p.remote = append(p.remote, addr6A) // last of the peer's candidates
	p.seen = []netip.AddrPort{addrA, addrB}
	to, _ := p.round(t0)
	if len(to) != maxPingsPerRound || !slices.Contains(to, addr6A) || to[0] != addrA {
		t.Fatalf("first round %v: want %d targets, the first source first, and the IPv6 candidate", to, maxPingsPerRound)
	}
}

func TestSendsTo(t *testing.T) {
	p := netip.MustParseAddr
	tests := []struct {
		local, to string
		want      bool
	}{
		{"::", "198.51.100.1", true},
		{"::", "2001:db8::1", true},
		{"0.0.0.0", "198.51.100.1", true}, // a kernel without IPv6
		{"0.0.0.0", "2001:db8::1", false},
		{"10.0.0.2", "198.51.100.1", true},
		{"10.0.0.2", "2001:db8::1", false},
		{"2001:db8::2", "2001:db8::1", true},
		{"2001:db8::2", "198.51.100.1", false},
		{"::1", "127.0.0.1", false},
		{"::ffff:10.0.0.2", "198.51.100.1", true},
		{"10.0.0.2", "::ffff:198.51.100.1", true},
	}
	for _, tt := range tests {
		if got := sendsTo(p(tt.local), p(tt.to)); got != tt.want {
			t.Errorf("sendsTo(%s, %s) = %v, want %v", tt.local, tt.to, got, tt.want)
		}
	}
}

// needIPv6Loopback skips the test where ::1 cannot be bound (IPv6 off).
func needIPv6Loopback(t *testing.T) {
	t.Helper()
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	c.Close()
}

// A socket on [::] is dual-stack, and hands on IPv4 senders unmapped: the
// same address an IPv4 socket would give.
func TestDualStackSocketUnmaps(t *testing.T) {
	needIPv6Loopback(t)
	got := make(chan netip.AddrPort, 4)
	s, err := ListenSocket("[::]:0", func(run []byte, seg int, from netip.AddrPort) { got <- from })
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if a := s.LocalAddr().Addr(); !a.Is6() || !a.IsUnspecified() {
		t.Fatalf("socket on %v, want [::]", a)
	}
	port := s.LocalAddr().Port()
	for _, tc := range []struct{ network, src, dst string }{
		{"udp4", "127.0.0.1", "127.0.0.1"},
		{"udp6", "::1", "::1"},
	} {
		c, err := net.ListenUDP(tc.network, &net.UDPAddr{IP: net.ParseIP(tc.src)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		frame := []byte{frameToRelay, 1, 2, 3, 4, 5, 6, 7, 8, 9}
		if _, err := c.WriteToUDP(frame, &net.UDPAddr{IP: net.ParseIP(tc.dst), Port: int(port)}); err != nil {
			t.Fatal(err)
		}
		want := c.LocalAddr().(*net.UDPAddr).AddrPort()
		want = netip.AddrPortFrom(want.Addr().Unmap(), want.Port())
		select {
		case from := <-got:
			if from != want || from.Addr().Is4In6() {
				t.Fatalf("%s sender seen as %v, want %v", tc.network, from, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s frame never arrived", tc.network)
		}
	}
}

// One relay socket on [::] serves an IPv4-only node and an IPv6-only node,
// which reach each other through it; neither spends its probe budget on
// the other's family, which its socket cannot send to.
func TestRelayDualStack(t *testing.T) {
	needIPv6Loopback(t)
	r, err := ListenRelay("[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	port := r.Socket().LocalAddr().Port()
	node := func(listen, relay string) *Node {
		nd := newTestNode(t, listen)
		nd.SetRoutes(RelayRoute{Addr: netip.AddrPortFrom(netip.MustParseAddr(relay), port)}, nil)
		la := nd.LocalAddr()
		// Attached by the address in the form the kernel reports on a
		// dual-stack socket: the relay keeps it unmapped.
		t.Cleanup(r.Attach(nd.Endpoint(), netip.AddrPortFrom(netip.AddrFrom16(la.Addr().As16()), la.Port())))
		return nd
	}
	dev := node("[::1]:0", "::1")
	cli := node("127.0.0.1:0", "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := dialEcho(t, ctx, cli, dev)
	echoOver(t, ctx, conn, 64<<10, "through a dual-stack relay")
	if cli.RelayedOut.Load() == 0 || dev.RelayedOut.Load() == 0 {
		t.Fatalf("relayed out: client %d, device %d bytes; want both through the relay", cli.RelayedOut.Load(), dev.RelayedOut.Load())
	}
	// Both probe from the start (the echo authorized the device's side):
	// each has the other's candidate, of the family it cannot send to.
	time.Sleep(probeFirst * 3)
	for _, nd := range []*Node{cli, dev} {
		nd.pathMu.RLock()
		for _, p := range nd.paths {
			p.mu.Lock()
			if len(p.remote) != 1 || p.seq != 0 {
				t.Errorf("node on %v: candidates %v, %d pings sent; want one, and no ping to the other family", nd.LocalAddr(), p.remote, p.seq)
			}
			p.mu.Unlock()
		}
		nd.pathMu.RUnlock()
		if ps := nd.Peers(); len(ps) != 1 || ps[0].Direct.IsValid() {
			t.Errorf("node on %v: peers %+v, want one relayed", nd.LocalAddr(), ps)
		}
	}
}

// Two nodes on dual-stack sockets both reach each other over 127.0.0.1
// and ::1; they probe both and end on IPv6.
func TestDirectPathPrefersIPv6(t *testing.T) {
	needIPv6Loopback(t)
	r, err := ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	node := func() *Node {
		nd := newTestNode(t, "[::]:0")
		nd.SetRoutes(RelayRoute{Addr: r.Socket().LocalAddr()}, nil)
		t.Cleanup(r.Attach(nd.Endpoint(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), nd.LocalAddr().Port())))
		return nd
	}
	dev, cli := node(), node()
	cands := cli.candidates()
	if !slices.ContainsFunc(cands, func(a netip.AddrPort) bool { return a.Addr() == netip.IPv6Loopback() }) ||
		!slices.ContainsFunc(cands, func(a netip.AddrPort) bool { return a.Addr() == netip.MustParseAddr("127.0.0.1") }) {
		t.Fatalf("candidates %v: want 127.0.0.1 and ::1", cands)
	}
	// Under load the first pongs of the two families may differ by more
	// than the 10 ms margin; the full probe rounds every 10 s weigh them
	// again, so three rounds are allowed.
	ctx, cancel := context.WithTimeout(context.Background(), 35*time.Second)
	defer cancel()
	conn := dialEcho(t, ctx, cli, dev)
	echoOver(t, ctx, conn, 1<<10, "to authorize")
	for _, nd := range []*Node{cli, dev} {
		for {
			ps := nd.Peers()
			if len(ps) == 1 && ps[0].Direct.Addr() == netip.IPv6Loopback() {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("peers %+v, want one direct over ::1", ps)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	echoOver(t, ctx, conn, 1<<20, "over IPv6")
}

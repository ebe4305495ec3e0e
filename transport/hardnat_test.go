package transport

import (
	"context"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"
)

func TestSprayPorts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, observed := range []uint16{40000, 1030, 65530, 5} {
		ports := sprayPorts(observed, sprayCount, r.Uint32)
		if len(ports) != sprayCount {
			t.Fatalf("observed %d: %d ports, want %d", observed, len(ports), sprayCount)
		}
		seen := map[uint16]bool{}
		for i, p := range ports {
			if p == 0 || p == observed || seen[p] {
				t.Fatalf("observed %d: port %d (index %d) is zero, the observed port or repeated", observed, p, i)
			}
			seen[p] = true
		}
		// Prediction first: the neighbours that exist, nearest first.
		for d := 1; d <= sprayPredict; d++ {
			for _, q := range []int{int(observed) + d, int(observed) - d} {
				if q >= 1 && q <= 65535 && !seen[uint16(q)] {
					t.Fatalf("observed %d: neighbour %d not sprayed", observed, q)
				}
			}
		}
		if observed == 40000 && (ports[0] != 40001 || ports[1] != 39999) {
			t.Fatalf("first ports %v, want the nearest neighbours", ports[:2])
		}
		for _, p := range ports[2*sprayPredict:] {
			if observed == 40000 && p < 1024 {
				t.Fatalf("random port %d below 1024", p)
			}
		}
	}
	// A count above what exists is capped, and still terminates.
	if n := len(sprayPorts(40000, 1<<20, r.Uint32)); n != 65535-1024 {
		t.Fatalf("capped spray has %d ports", n)
	}
}

// The chance the budget buys, as the package comment states it.
func TestSprayOdds(t *testing.T) {
	miss := 1.0
	for range sprayCount {
		miss *= 1 - float64(hardSockets)/(65536-1024)
	}
	if miss > 0.02 {
		t.Fatalf("a spray misses %d mappings with probability %.3f", hardSockets, miss)
	}
	// And by simulation: random mappings, a real spray.
	r := rand.New(rand.NewPCG(3, 4))
	misses := 0
	const trials = 400
	for range trials {
		mapped := map[uint16]bool{}
		for len(mapped) < hardSockets {
			mapped[uint16(1024+r.IntN(65536-1024))] = true
		}
		hit := false
		for _, p := range sprayPorts(uint16(1024+r.IntN(60000)), sprayCount, r.Uint32) {
			hit = hit || mapped[p]
		}
		if !hit {
			misses++
		}
	}
	if misses > trials/20 {
		t.Fatalf("%d of %d simulated attempts missed", misses, trials)
	}
	t.Logf("analytic miss %.4f; simulated %d/%d", miss, misses, trials)
}

func TestNATReport(t *testing.T) {
	for _, a := range []netip.AddrPort{{}, netip.MustParseAddrPort("203.0.113.5:4242"), netip.MustParseAddrPort("[2001:db8::1]:9")} {
		b := appendNATReport(nil, natRemaps, a)
		kind, got, err := parseNATReport(b)
		if err != nil || kind != natRemaps || got != a {
			t.Fatalf("%v: got %v %v %v", a, kind, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {msgNATReport}, {msgNATReport, 3, 0}, {msgNATReport, 1, 4, 1, 2, 3}, {msgNATReport, 1, 0, 9},
		{msgNATReport, 1, 4, 1, 2, 3, 4, 0, 0}, {msgCandidates, 1, 0}} {
		if _, _, err := parseNATReport(bad); err == nil {
			t.Fatalf("%x parsed", bad)
		}
	}
}

// The easy side sprays only on the peer's go, only to an IP among the
// peer's candidates in scope, at most once per hardEvery, and within the
// node's budget; every ping of it is counted.
func TestHardStepBudget(t *testing.T) {
	n := newTestNode(t, "127.0.0.1:0")
	// This node kept its port; the relay saw it on loopback.
	n.SetObserved(n.LocalAddr())
	n.routes.Store(&routes{home: RelayRoute{Addr: netip.MustParseAddrPort("127.0.0.1:7443")}})
	// Pings are counted as they are made (the path's seq); none leaves:
	// random ports of this shared machine's loopback are someone else's.
	n.sock.Close()
	peerAddr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 40000)

	p := newPath(7, n.addr(7))
	p.keys = []*discoKey{{secret: make([]byte, 32), authorized: true}}
	h := newHardNAT()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	now := time.Now()

	step := func() {
		n.hardStep(ctx, nil, p, h, &wg, now)
		wg.Wait()
	}
	sent := func() int { return int(p.seq) }

	h.received(appendNATReport(nil, natRemaps, peerAddr), p)
	step()
	if sent() != 0 {
		t.Fatalf("sprayed %d pings without the peer's go", sent())
	}
	h.received([]byte{msgHardGo}, p)
	step()
	if sent() != 0 {
		t.Fatalf("sprayed %d pings at an IP that is not among the peer's candidates", sent())
	}
	p.remote = []netip.AddrPort{peerAddr}
	h.received([]byte{msgHardGo}, p)
	step()
	if sent() != sprayCount {
		t.Fatalf("one go: %d pings, want %d", sent(), sprayCount)
	}
	h.received([]byte{msgHardGo}, p)
	step()
	if sent() != sprayCount {
		t.Fatalf("a second go within hardEvery: %d pings in all, want %d", sent(), sprayCount)
	}
	// Other connections share the node's budget: two sprays at once, then
	// none until it refills.
	for i := range 3 {
		q := newPath(Endpoint(8+i), n.addr(Endpoint(8+i)))
		q.keys = p.keys
		q.remote = p.remote
		hq := newHardNAT()
		hq.received(appendNATReport(nil, natRemaps, peerAddr), q)
		hq.received([]byte{msgHardGo}, q)
		n.hardStep(ctx, nil, q, hq, &wg, now)
		wg.Wait()
		want := sprayCount
		if i >= 1 {
			want = 0 // the burst (hardBurst) is spent
		}
		if int(q.seq) != want {
			t.Fatalf("connection %d: %d pings, want %d (node budget)", i+2, q.seq, want)
		}
	}
	// A peer that reports an address out of scope gets nothing.
	r := newPath(20, n.addr(20))
	r.keys = p.keys
	priv := netip.MustParseAddrPort("192.168.77.1:5000")
	r.remote = []netip.AddrPort{priv}
	hr := newHardNAT()
	hr.received(appendNATReport(nil, natRemaps, priv), r)
	hr.received([]byte{msgHardGo}, r)
	n.hard.pings.AllowN(now.Add(time.Hour), 0) // refill
	n.hardStep(ctx, nil, r, hr, &wg, now.Add(time.Hour))
	wg.Wait()
	if r.seq != 0 {
		t.Fatalf("sprayed %d pings at an address out of scope", r.seq)
	}
}

func FuzzParseNATReport(f *testing.F) {
	f.Add(appendNATReport(nil, natRemaps, netip.MustParseAddrPort("203.0.113.7:40000")))
	f.Add(appendNATReport(nil, natKeepsPort, netip.MustParseAddrPort("[2001:db8::1]:40000")))
	f.Add(appendNATReport(nil, natUnknown, netip.AddrPort{}))
	f.Add([]byte{msgNATReport, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0, 80})
	f.Fuzz(func(t *testing.T, b []byte) {
		kind, addr, err := parseNATReport(b)
		if err != nil {
			if err != errBadNATReport {
				t.Fatalf("parseNATReport(%x): %v", b, err)
			}
			return
		}
		if kind > natRemaps || (addr.IsValid() && (addr.Port() == 0 || addr.Addr().Is4In6())) {
			t.Fatalf("parseNATReport(%x) = %v %v", b, kind, addr)
		}
		enc := appendNATReport(nil, kind, addr)
		k2, a2, err := parseNATReport(enc)
		if err != nil || k2 != kind || a2 != addr {
			t.Fatalf("parseNATReport(%x) = %v %v; re-encoded as %x, parses to %v %v %v", b, kind, addr, enc, k2, a2, err)
		}
	})
}

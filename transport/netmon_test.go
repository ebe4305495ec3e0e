package transport

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeNet is a host network a test changes by hand, and a netMonitor
// running on it.
type fakeNet struct {
	mu      sync.Mutex
	st      netState
	events  chan struct{}
	changes chan struct{}
}

func startFakeMonitor(t *testing.T, poll time.Duration) *fakeNet {
	t.Helper()
	f := &fakeNet{st: netState{addrs: "eth0=10.2.0.2/24", relay: addrA, via: "10.2.0.2"},
		events: make(chan struct{}, 1), changes: make(chan struct{}, 16)}
	m := &netMonitor{
		read: func() netState {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.st
		},
		events:  f.events,
		poll:    poll,
		settle:  20 * time.Millisecond,
		changed: func() { f.changes <- struct{}{} },
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// The first read is the baseline: changes come after it.
	last := m.read()
	wg.Go(func() { m.run(ctx, last) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return f
}

func (f *fakeNet) set(st netState) {
	f.mu.Lock()
	f.st = st
	f.mu.Unlock()
}

func (f *fakeNet) event() {
	select {
	case f.events <- struct{}{}:
	default:
	}
}

// expect waits up to d for n changes, then checks that no more come for
// quiet.
func (f *fakeNet) expect(t *testing.T, n int, d, quiet time.Duration) {
	t.Helper()
	for i := range n {
		select {
		case <-f.changes:
		case <-time.After(d):
			t.Fatalf("change %d of %d not reported within %v", i+1, n, d)
		}
	}
	select {
	case <-f.changes:
		t.Fatalf("more than %d changes reported", n)
	case <-time.After(quiet):
	}
}

func TestNetMonitorEvents(t *testing.T) {
	f := startFakeMonitor(t, 0)
	// Events that leave the fingerprint alone are no change.
	f.event()
	f.expect(t, 0, 0, 100*time.Millisecond)

	// A new address: one change, however many events the burst has.
	f.set(netState{addrs: "eth1=10.3.0.2/24", relay: addrA, via: "10.3.0.2"})
	for range 5 {
		f.event()
		time.Sleep(2 * time.Millisecond)
	}
	f.expect(t, 1, time.Second, 100*time.Millisecond)

	// Only the route toward the relay changed (a VPN took the default
	// route, the addresses stayed): a change.
	f.set(netState{addrs: "eth1=10.3.0.2/24", relay: addrA, via: "10.8.0.5"})
	f.event()
	f.expect(t, 1, time.Second, 100*time.Millisecond)

	// Another relay, so another route: not a change of the network.
	f.set(netState{addrs: "eth1=10.3.0.2/24", relay: addrB, via: "10.3.0.2"})
	f.event()
	f.expect(t, 0, 0, 100*time.Millisecond)

	// But new addresses are, whatever happened to the relay meanwhile.
	f.set(netState{addrs: "eth0=10.2.0.2/24", relay: netip.AddrPort{}, via: ""})
	f.event()
	f.expect(t, 1, time.Second, 100*time.Millisecond)
}

func TestNetMonitorSettles(t *testing.T) {
	f := startFakeMonitor(t, 0)
	// An endless stream of events does not postpone the check: it comes
	// settle after the first of the burst.
	f.set(netState{addrs: "eth1=10.3.0.2/24", relay: addrA, via: "10.3.0.2"})
	stop := time.Now().Add(300 * time.Millisecond)
	got := false
	for time.Now().Before(stop) && !got {
		f.event()
		select {
		case <-f.changes:
			got = true
		case <-time.After(time.Millisecond):
		}
	}
	if !got {
		t.Fatal("a busy event stream postponed the check")
	}
}

func TestNetMonitorPolls(t *testing.T) {
	f := startFakeMonitor(t, 20*time.Millisecond)
	f.set(netState{addrs: "wlan0=192.168.1.20/24", relay: addrA, via: "192.168.1.20"})
	f.expect(t, 1, time.Second, 100*time.Millisecond)
}

// The node's part: on a change it forgets its public address and its
// direct paths, wakes whoever waits on NetworkChanged, and starts
// probing over.
func TestNodeNetworkChanged(t *testing.T) {
	n := newTestNode(t, "127.0.0.1:0")
	n.SetObserved(addrA)
	p := testPath()
	if !confirm(t, p, addrB, 5*time.Millisecond, time.Now()) {
		t.Fatal("path not confirmed")
	}
	n.pathMu.Lock()
	n.paths[p.ep] = p
	n.pathMu.Unlock()

	changed := n.NetworkChanged()
	n.networkChanged()
	select {
	case <-changed:
	default:
		t.Fatal("NetworkChanged's channel not closed by a change")
	}
	select {
	case <-n.NetworkChanged():
		t.Fatal("the next NetworkChanged channel is closed already")
	default:
	}
	if n.NetworkChanges() != 1 {
		t.Fatalf("NetworkChanges %d, want 1", n.NetworkChanges())
	}
	if o := n.Observed(); o.IsValid() {
		t.Fatalf("observed address %v kept across a network change", o)
	}
	if a, ok := p.current(time.Now()); ok {
		t.Fatalf("direct path %v kept across a network change", a)
	}
	if !p.takeRestart() || p.takeRestart() {
		t.Fatal("probing not restarted exactly once")
	}
	select {
	case <-p.wake:
	default:
		t.Fatal("path not woken")
	}
	// A path seen once stays known: a path that works again is taken at
	// its first pong.
	if !p.everBest.Load() || !directClosed(p) {
		t.Fatal("everBest or direct lost")
	}
	if !confirm(t, p, addrB, 5*time.Millisecond, time.Now()) {
		t.Fatal("path not confirmed again after the change")
	}
}

// A fingerprint of this host: it reads, and the same host gives the same
// one twice.
func TestNetFingerprintStable(t *testing.T) {
	lo := netip.MustParseAddrPort("127.0.0.1:9")
	a, b := netFingerprint(lo), netFingerprint(lo)
	if a != b {
		t.Fatalf("fingerprint changed with nothing changing:\n%+v\n%+v", a, b)
	}
	if a.via != "127.0.0.1" {
		t.Fatalf("route toward %v from %q, want 127.0.0.1", lo, a.via)
	}
}

// A node's candidates and scope come from its last reading of its
// interfaces (the monitor's, with each fingerprint), not from the kernel
// at each call: a heartbeat of each of many connections, or a stranger's
// ping, costs no dump of the address table. A new reading is what both
// follow.
func TestCandidatesAndScopeFromReading(t *testing.T) {
	n := newTestNode(t, ":0")
	n.SetRoutes(RelayRoute{Addr: netip.MustParseAddrPort("198.51.100.1:7443")}, nil) // off loopback: interface addresses are candidates
	port := n.LocalAddr().Port()
	reading := func(cidrs ...string) {
		var addrs []net.Addr
		for _, c := range cidrs {
			ip, ipn, err := net.ParseCIDR(c)
			if err != nil {
				t.Fatal(err)
			}
			ipn.IP = ip
			addrs = append(addrs, ipn)
		}
		n.ifaces.Store(&addrs)
	}
	at := func(s string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(s), port) }

	reading("203.0.113.77/24", "fd12:3456::7/64")
	for range 3 {
		if c := n.candidates(); !slices.Contains(c, at("203.0.113.77")) || !slices.Contains(c, at("fd12:3456::7")) {
			t.Fatalf("candidates %v: want those of the reading", c)
		}
		if s := n.scope(); !s.admits(netip.MustParseAddr("fd12:3456::99")) || s.admits(netip.MustParseAddr("fd99::1")) {
			t.Fatalf("scope %+v: want the reading's private prefix and no other", s)
		}
	}
	reading("203.0.113.78/24", "fd99::5/64")
	if c := n.candidates(); !slices.Contains(c, at("203.0.113.78")) || slices.Contains(c, at("203.0.113.77")) {
		t.Fatalf("candidates %v after a new reading: want its addresses only", c)
	}
	if s := n.scope(); s.admits(netip.MustParseAddr("fd12:3456::99")) || !s.admits(netip.MustParseAddr("fd99::1")) {
		t.Fatalf("scope %+v after a new reading: want its private prefix only", s)
	}
}

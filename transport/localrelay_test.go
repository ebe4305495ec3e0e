package transport

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

func TestInterfaceCandidates(t *testing.T) {
	ap := func(ss ...string) []netip.AddrPort {
		var out []netip.AddrPort
		for _, s := range ss {
			out = append(out, netip.AddrPortFrom(netip.MustParseAddr(s), 41641))
		}
		return out
	}
	tests := []struct {
		name             string
		loopback, beyond bool
		want             []netip.AddrPort
	}{
		{"relay on loopback only", true, false, ap("127.0.0.1", "::1")},
		{"relay on loopback, serving beyond", true, true,
			ap("192.168.1.10", "10.8.0.2", "100.101.0.2", "fd00:1::5", "127.0.0.1", "::1", "203.0.113.5")},
		{"relay elsewhere", false, true, ap("192.168.1.10", "10.8.0.2", "100.101.0.2", "fd00:1::5", "203.0.113.5")},
	}
	for _, tt := range tests {
		if got := interfaceCandidates(testIfaces, 41641, tt.loopback, tt.beyond); !slices.Equal(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

// Only the relay of this process, listening beyond loopback and reached
// over loopback, widens a loopback-scoped node.
func TestRelayServesBeyondLoopback(t *testing.T) {
	tn := newTestNet(t)
	n := tn.node(t)
	port := tn.relayAddr.Port()
	at := func(s string, p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(s), p) }
	if n.relayServesBeyondLoopback() {
		t.Fatal("no relay in this process: serves beyond loopback")
	}
	for _, tt := range []struct {
		listen netip.AddrPort
		want   bool
	}{
		{at("127.0.0.1", port), false}, // make run: this machine only
		{at("::1", port), false},
		{at("0.0.0.0", port), true},
		{at("::", port), true},
		{at("::ffff:0.0.0.0", port), true}, // 0.0.0.0 as a dual-stack socket may say it
		{at("192.168.1.10", port), true},
		{at("0.0.0.0", port+1), false}, // another relay than the node's home
	} {
		n.SetLocalRelay(tt.listen)
		if got := n.relayServesBeyondLoopback(); got != tt.want {
			t.Errorf("relay of this process on %v, home %v: %v, want %v", tt.listen, tn.relayAddr, got, tt.want)
		}
	}
	n.SetLocalRelay(at("0.0.0.0", port))
	n.SetRoutes(RelayRoute{Addr: at("198.51.100.1", port)}, nil)
	if n.relayServesBeyondLoopback() {
		t.Error("home relay off loopback: still widened by the relay of this process")
	}
}

// The candidates a node on all addresses offers, on this machine's real
// interfaces: loopback only while its relay serves this machine alone;
// every interface address too (and loopback still) once that relay,
// running in this process, listens beyond loopback. Its scope keeps
// loopback either way, for peers on this machine.
func TestCandidatesEmbeddedRelay(t *testing.T) {
	tn := newTestNet(t)
	n := newTestNode(t, ":0")
	n.SetRoutes(RelayRoute{Addr: tn.relayAddr}, nil)
	port := n.LocalAddr().Port()
	n.SetObserved(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)) // what the relay sees

	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var others []netip.AddrPort
	for _, p := range interfacePrefixes(ifaddrs) {
		if a := p.Addr(); !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			others = append(others, netip.AddrPortFrom(a, port))
		}
	}
	lo := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)

	cands := n.candidates()
	if !slices.Contains(cands, lo) {
		t.Errorf("relay on loopback only: candidates %v, want %v among them", cands, lo)
	}
	for _, c := range cands {
		if !c.Addr().IsLoopback() {
			t.Errorf("relay on loopback only: candidate %v beyond loopback", c)
		}
	}

	n.SetLocalRelay(netip.AddrPortFrom(netip.IPv4Unspecified(), tn.relayAddr.Port()))
	cands = n.candidates()
	if !slices.Contains(cands, lo) {
		t.Errorf("relay serving beyond loopback: candidates %v, want %v (peers on this machine) among them", cands, lo)
	}
	for _, o := range others[:min(len(others), maxCandidates-3)] {
		if !slices.Contains(cands, o) {
			t.Errorf("relay serving beyond loopback: candidates %v, want interface address %v among them", cands, o)
		}
	}
	if len(others) == 0 {
		t.Logf("this machine has no interface beyond loopback: only loopback checked (candidates %v)", cands)
	}
	if !n.scope().admits(lo.Addr()) {
		t.Error("relay serving beyond loopback: loopback left the node's scope")
	}
}

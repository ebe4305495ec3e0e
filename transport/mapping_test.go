package transport

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// The router's mapping is offered as a candidate only when public, and
// MapPort's goroutine asks nothing of a node on a loopback relay (it ends
// at once) and stops with Close when the node never registers.
func TestMappedCandidate(t *testing.T) {
	n := newTestNode(t, "127.0.0.1:0")
	for _, c := range []struct {
		addr string
		kept bool
	}{
		{"198.51.7.9:4000", true},
		{"10.0.0.1:4000", false},   // a router behind another NAT
		{"100.64.3.2:4000", false}, // carrier-grade NAT outside
		{"0.0.0.0:4000", false},    // nonsense from the router
		{"224.0.0.1:4000", false},  // multicast
		{"[::ffff:198.51.7.9]:4000", true},
	} {
		n.setMapped(netip.MustParseAddrPort(c.addr))
		got := n.Mapped()
		if c.kept != got.IsValid() {
			t.Fatalf("setMapped(%s): Mapped() = %v, want kept %v", c.addr, got, c.kept)
		}
		if c.kept && !slices.Contains(n.candidates(), got) {
			t.Fatalf("candidates %v lack the mapping %v", n.candidates(), got)
		}
	}
	if got := n.Mapped(); got.Addr() != netip.MustParseAddr("198.51.7.9") {
		t.Fatalf("mapping %v kept unmapped? want 198.51.7.9", got)
	}

	// Not registered yet: the goroutine waits, and Close ends it (goleak
	// checks that nothing is left).
	n.MapPort()
	n.MapPort() // a second call starts nothing more
	time.Sleep(50 * time.Millisecond)
}

func TestMapPortLoopbackRelay(t *testing.T) {
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(k, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.routes.Store(&routes{home: RelayRoute{Addr: netip.MustParseAddrPort("127.0.0.1:7443")}})
	n.setMapped(netip.MustParseAddrPort("198.51.7.9:4000"))
	n.MapPort()
	// The goroutine ends by itself, forgetting any mapping, without a packet
	// to the host's gateway; Close finds nothing to wait for.
	deadline := time.Now().Add(2 * time.Second)
	for n.Mapped().IsValid() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n.Mapped().IsValid() {
		t.Fatal("a node on a loopback relay kept a mapping")
	}
	start := time.Now()
	n.Close()
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v", d)
	}
}

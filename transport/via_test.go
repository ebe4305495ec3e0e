package transport

import (
	"net/netip"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Routes to peers homed on another rendezvous node (DialPeerVia): frames
// go to that node while a session to it is registered (AddRelay), and
// fall back to the node's own relay when it ends.
func TestViaRoutes(t *testing.T) {
	key, _ := identity.Generate()
	n, err := NewNode(key, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	home := netip.MustParseAddrPort("127.0.0.1:1001")
	other := netip.MustParseAddrPort("127.0.0.1:1002")
	n.SetRelay(home)
	const ep = Endpoint(7)
	if r, ok := n.relayFor(ep); !ok || r != home {
		t.Fatalf("relayFor = %v, %v; want the node's relay", r, ok)
	}
	if n.fromRelay(other) {
		t.Fatal("frames accepted from a relay the node is not registered with")
	}
	n.AddRelay(other)
	n.viaMu.Lock()
	n.via = map[Endpoint]viaRoute{ep: {relay: other, refs: 2}}
	n.nVia.Add(1)
	n.viaMu.Unlock()
	if r, _ := n.relayFor(ep); r != other {
		t.Fatalf("relayFor = %v, want %v", r, other)
	}
	if r, _ := n.relayFor(ep + 1); r != home {
		t.Fatalf("other peer: relayFor = %v, want %v", r, home)
	}
	if !n.fromRelay(other) || !n.fromRelay(home) {
		t.Fatal("frames refused from a registered relay")
	}
	n.dropVia(ep, other) // one of two connections ends
	if r, _ := n.relayFor(ep); r != other {
		t.Fatalf("after one of two connections ended: relayFor = %v", r)
	}
	n.RemoveRelay(other) // the session to the home node ended
	if r, _ := n.relayFor(ep); r != home {
		t.Fatalf("session gone: relayFor = %v, want fallback %v", r, home)
	}
	if n.fromRelay(other) {
		t.Fatal("frames accepted after the session ended")
	}
	n.dropVia(ep, other)
	if n.nVia.Load() != 0 {
		t.Fatalf("nVia = %d after everything was dropped", n.nVia.Load())
	}
}

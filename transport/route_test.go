package transport

import (
	"net/netip"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// The routing table: frames go to the home relay, except to peers routed
// via another rendezvous node; frames are accepted from exactly the relays
// the table names, and a table without a peer's route falls back home.
func TestRoutes(t *testing.T) {
	key, _ := identity.Generate()
	n, err := NewNode(key, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	home := netip.MustParseAddrPort("127.0.0.1:1001")
	other := netip.MustParseAddrPort("127.0.0.1:1002")
	const ep = Endpoint(7)

	if _, ok := n.routes.Load().relayFor(ep); ok {
		t.Fatal("a node with no table routes frames")
	}
	if n.routes.Load().accepts(netip.AddrPort{}) {
		t.Fatal("a node with no table accepts frames from the zero address")
	}
	n.SetRoutes(RelayRoute{Addr: home, Name: "A@home"}, nil)
	if r, ok := n.routes.Load().relayFor(ep); !ok || r.Addr != home || r.Name != "A@home" {
		t.Fatalf("relayFor = %v, %v; want the home relay", r, ok)
	}
	if n.routes.Load().accepts(other) {
		t.Fatal("frames accepted from a relay the table does not name")
	}

	via := map[Endpoint]RelayRoute{ep: {Addr: netip.MustParseAddrPort("[::ffff:127.0.0.1]:1002"), Name: "B@other"}}
	n.SetRoutes(RelayRoute{Addr: home}, via)
	via[ep+1] = RelayRoute{Addr: other} // the table is a copy
	rt := n.routes.Load()
	if r, _ := rt.relayFor(ep); r.Addr != other || r.Name != "B@other" {
		t.Fatalf("relayFor = %v, want %v (unmapped)", r, other)
	}
	if r, _ := rt.relayFor(ep + 1); r.Addr != home {
		t.Fatalf("other peer: relayFor = %v, want %v", r, home)
	}
	if !rt.accepts(other) || !rt.accepts(home) {
		t.Fatal("frames refused from a relay the table names")
	}

	n.SetRoutes(RelayRoute{Addr: home}, nil) // the session to the home node ended
	rt = n.routes.Load()
	if r, _ := rt.relayFor(ep); r.Addr != home {
		t.Fatalf("route gone: relayFor = %v, want fallback %v", r, home)
	}
	if rt.accepts(other) {
		t.Fatal("frames accepted after the route was dropped")
	}
	if got := rt.home; got.Addr != home {
		t.Fatalf("home route = %v", got)
	}
}

// testEndpoint is an Endpoint of no one in particular.
func testEndpoint() Endpoint {
	k, _ := identity.Generate()
	ep, _ := NewEndpoint(k.ID())
	return ep
}

// An Endpoint is bound to the key that derived it.
func TestEndpointBoundToKey(t *testing.T) {
	a, _ := identity.Generate()
	b, _ := identity.Generate()
	ep, nonce := NewEndpoint(a.ID())
	if ep == 0 || DeriveEndpoint(a.ID(), nonce) != ep {
		t.Fatalf("NewEndpoint = %v, which its nonce does not derive", ep)
	}
	if DeriveEndpoint(b.ID(), nonce) == ep {
		t.Fatal("another key's derivation with the same nonce gives the same Endpoint")
	}
	if ep2, _ := NewEndpoint(a.ID()); ep2 == ep {
		t.Fatal("two processes with one key got one Endpoint")
	}
}

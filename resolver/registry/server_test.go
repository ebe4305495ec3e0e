package registry

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver/internal/wire"
	"github.com/tunnel-dev/tunnel/transport"
)

// testServer runs a Server with presence p on a loopback relay.
func testServer(t *testing.T, p Presence) (*identity.Key, *transport.Relay) {
	t.Helper()
	key, _ := identity.Generate()
	relay, err := transport.ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Key: key, Relay: relay, Presence: p, Log: zerolog.Nop()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); relay.Close(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return key, relay
}

// rawNode is a node speaking the registry protocol by hand.
type rawNode struct {
	node *transport.Node
	conn *quic.Conn
}

func dialServer(t *testing.T, key *identity.Key, relay *transport.Relay) *rawNode {
	t.Helper()
	k, _ := identity.Generate()
	n, err := transport.NewNode(k, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := n.DialRelay(ctx, relay.Socket().LocalAddr(), key.ID())
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, ""); n.Close() })
	return &rawNode{n, conn}
}

func (r *rawNode) ask(t *testing.T, typ byte, body []byte) (byte, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	str, err := r.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = str.SetDeadline(time.Now().Add(5 * time.Second))
	if err := wire.WriteMsg(str, typ, body); err != nil {
		t.Fatal(err)
	}
	str.Close()
	status, reply, err := wire.ReadMsg(str)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, str)
	return status, reply
}

func TestServerRegisterLookup(t *testing.T) {
	p := NewMemoryPresence()
	key, relay := testServer(t, p)
	dev := dialServer(t, key, relay)
	cli := dialServer(t, key, relay)

	status, reply := dev.ask(t, wire.ReqRegister, wire.Register{Endpoint: dev.node.Endpoint(), Nonce: dev.node.EndpointNonce(), Publishes: true}.Body())
	if status != wire.StatusOK {
		t.Fatalf("register: %s", wire.StatusText(status))
	}
	if obs, err := wire.ParseObserved(reply); err != nil || obs != dev.node.LocalAddr() {
		t.Fatalf("observed %v (%v), want %v", obs, err, dev.node.LocalAddr())
	}
	if status, _ := cli.ask(t, wire.ReqRegister, wire.Register{Endpoint: cli.node.Endpoint(), Nonce: cli.node.EndpointNonce(), Publishes: false}.Body()); status != wire.StatusOK {
		t.Fatalf("register client: %s", wire.StatusText(status))
	}
	if p.Len() != 1 || relay.Attached() != 2 {
		t.Fatalf("presence %d, attached %d; want 1 device, 2 attached", p.Len(), relay.Attached())
	}

	status, reply = cli.ask(t, wire.ReqLookup, wire.LookupBody(dev.node.Key().ID()))
	f, err := wire.ParseFound(status, reply)
	if err != nil || f.Endpoint != dev.node.Endpoint() || !f.Home.IsZero() {
		t.Fatalf("lookup: %+v, %v", f, err)
	}
	// A node that does not publish is not a device.
	if status, _ := dev.ask(t, wire.ReqLookup, wire.LookupBody(cli.node.Key().ID())); status != wire.StatusNotFound {
		t.Fatalf("lookup of a client: %s, want not found", wire.StatusText(status))
	}
	// A record homed on another node is a redirect.
	other, _ := identity.Generate()
	p.Set(context.Background(), other.ID(), Record{Endpoint: 9, Node: other.ID(), Addr: "192.0.2.1:7443"})
	status, reply = cli.ask(t, wire.ReqLookup, wire.LookupBody(other.ID()))
	if f, err := wire.ParseFound(status, reply); err != nil || f.Home != other.ID() || f.HomeAddr != "192.0.2.1:7443" || f.Endpoint != 9 {
		t.Fatalf("redirect: %s %+v, %v", wire.StatusText(status), f, err)
	}

	for _, bad := range []struct {
		typ  byte
		body []byte
	}{
		{wire.ReqRegister, []byte{1, 2, 3}},
		{wire.ReqRegister, wire.Register{Endpoint: 0, Nonce: transport.EndpointNonce{}, Publishes: true}.Body()},
		{wire.ReqRegister, wire.Register{Endpoint: cli.node.Endpoint(), Nonce: transport.EndpointNonce{9}, Publishes: false}.Body()}, // another nonce
		{wire.ReqLookup, []byte("short")},
		{99, nil},
	} {
		if status, _ := cli.ask(t, bad.typ, bad.body); status != wire.StatusBadRequest {
			t.Errorf("request %d %x: %s, want bad request", bad.typ, bad.body, wire.StatusText(status))
		}
	}

	// The device's connection ends: its record and attachment go with it.
	dev.conn.CloseWithError(0, "")
	deadline := time.Now().Add(5 * time.Second)
	for p.Len() != 1 || relay.Attached() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after the device left: presence %d, attached %d", p.Len(), relay.Attached())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := p.Get(context.Background(), dev.node.Key().ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("device record after it left: %v", err)
	}
}

// An Endpoint can be registered only by the key that derives it: a
// stranger who learned a device's Endpoint (lookups are public), even with
// its nonce, can neither take it nor register it first and lock the
// device out.
func TestServerEndpointBoundToKey(t *testing.T) {
	p := NewMemoryPresence()
	key, relay := testServer(t, p)
	dev := dialServer(t, key, relay)
	stranger := dialServer(t, key, relay)
	squat := wire.Register{Endpoint: dev.node.Endpoint(), Nonce: dev.node.EndpointNonce(), Publishes: true}.Body()
	if status, _ := stranger.ask(t, wire.ReqRegister, squat); status != wire.StatusBadRequest {
		t.Fatalf("a stranger registering the device's endpoint first: %s, want bad request", wire.StatusText(status))
	}
	if status, _ := dev.ask(t, wire.ReqRegister, squat); status != wire.StatusOK {
		t.Fatalf("the device registering its own endpoint after: %s", wire.StatusText(status))
	}
	if status, _ := stranger.ask(t, wire.ReqRegister, squat); status != wire.StatusBadRequest {
		t.Fatalf("a stranger registering the device's endpoint after: %s, want bad request", wire.StatusText(status))
	}
	if relay.Attached() != 1 || p.Len() != 1 {
		t.Fatalf("attached %d, presence %d; want only the device", relay.Attached(), p.Len())
	}
}

// A node that registers again on a new connection from the same address
// (its old connection not yet timed out at the relay) stays attached when
// the old connection ends.
func TestServerReregisterSameAddress(t *testing.T) {
	p := NewMemoryPresence()
	key, relay := testServer(t, p)
	dev := dialServer(t, key, relay)
	if status, _ := dev.ask(t, wire.ReqRegister, wire.Register{Endpoint: dev.node.Endpoint(), Nonce: dev.node.EndpointNonce(), Publishes: true}.Body()); status != wire.StatusOK {
		t.Fatalf("register: %s", wire.StatusText(status))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn2, err := dev.node.DialRelay(ctx, relay.Socket().LocalAddr(), key.ID())
	if err != nil {
		t.Fatal(err)
	}
	second := &rawNode{dev.node, conn2}
	defer conn2.CloseWithError(0, "")
	if status, _ := second.ask(t, wire.ReqRegister, wire.Register{Endpoint: dev.node.Endpoint(), Nonce: dev.node.EndpointNonce(), Publishes: true}.Body()); status != wire.StatusOK {
		t.Fatalf("register again: %s", wire.StatusText(status))
	}
	dev.conn.CloseWithError(0, "") // the old connection ends
	time.Sleep(300 * time.Millisecond)
	if relay.Attached() != 1 || p.Len() != 1 {
		t.Fatalf("after the old connection ended: attached %d, presence %d; want 1, 1", relay.Attached(), p.Len())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 20 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A node whose network changed registers again, proving its key, on a new
// connection from a new address (resolver's netchange.go): the relay
// forwards to the new address from then on, the old connection's pings do
// not take the route back, and its end does not unregister the node.
func TestServerReregisterNewAddress(t *testing.T) {
	p := NewMemoryPresence()
	key, relay := testServer(t, p)
	relayAddr := relay.Socket().LocalAddr()
	dev := dialServer(t, key, relay)
	body := wire.Register{Endpoint: dev.node.Endpoint(), Nonce: dev.node.EndpointNonce(), Publishes: true}.Body()
	if status, _ := dev.ask(t, wire.ReqRegister, body); status != wire.StatusOK {
		t.Fatalf("register: %s", wire.StatusText(status))
	}
	// The same key on another socket: the node after the move.
	moved, err := transport.NewNode(dev.node.Key(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn2, err := moved.DialRelay(ctx, relayAddr, key.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.CloseWithError(0, "")
	status, reply := (&rawNode{moved, conn2}).ask(t, wire.ReqRegister, body)
	if status != wire.StatusOK {
		t.Fatalf("register from the new address: %s", wire.StatusText(status))
	}
	if obs, err := wire.ParseObserved(reply); err != nil || obs != moved.LocalAddr() {
		t.Fatalf("observed %v (%v), want the new address %v", obs, err, moved.LocalAddr())
	}
	if status, _ := dev.ask(t, wire.ReqPing, make([]byte, wire.PingLen)); status != wire.StatusOK {
		t.Fatalf("ping on the old connection: %s", wire.StatusText(status))
	}
	dev.conn.CloseWithError(0, "") // the old connection ends
	time.Sleep(300 * time.Millisecond)
	if relay.Attached() != 1 || p.Len() != 1 {
		t.Fatalf("after the old connection ended: attached %d, presence %d; want 1, 1", relay.Attached(), p.Len())
	}

	// Frames to the Endpoint reach the new socket, none the old one: a
	// third node's handshake packets, relayed.
	for _, n := range []*transport.Node{dev.node, moved} {
		n.SetRoutes(transport.RelayRoute{Addr: relayAddr}, nil)
	}
	cli := dialServer(t, key, relay)
	if status, _ := cli.ask(t, wire.ReqRegister, wire.Register{Endpoint: cli.node.Endpoint(), Nonce: cli.node.EndpointNonce(), Publishes: false}.Body()); status != wire.StatusOK {
		t.Fatalf("register the client: %s", wire.StatusText(status))
	}
	cli.node.SetRoutes(transport.RelayRoute{Addr: relayAddr}, nil)
	dctx, dcancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer dcancel()
	_, _ = cli.node.DialPeer(dctx, dev.node.Key().ID(), dev.node.Endpoint()) // no listener: it times out
	if moved.RelayedIn.Load() == 0 || dev.node.RelayedIn.Load() != 0 {
		t.Fatalf("relayed bytes in: new socket %d, old socket %d; want some, none", moved.RelayedIn.Load(), dev.node.RelayedIn.Load())
	}
}

package registry

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver/internal/wire"
	"github.com/tunnel-dev/tunnel/transport"
)

// leaseServer runs a Server with memory presence on addr ("127.0.0.1:0"
// for any), holding leased registrations idle for up to idle; stop ends
// it and frees addr.
type leaseServer struct {
	key      *identity.Key
	relay    *transport.Relay
	presence *MemoryPresence
	stop     func()
}

func startLeaseServer(t *testing.T, key *identity.Key, addr string, idle time.Duration) *leaseServer {
	t.Helper()
	relay, err := transport.ListenRelay(addr)
	if err != nil {
		t.Fatal(err)
	}
	ls := &leaseServer{key: key, relay: relay, presence: NewMemoryPresence()}
	srv := &Server{Key: key, Relay: relay, Presence: ls.presence, Log: zerolog.Nop(), leaseIdle: idle}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); relay.Close(); close(done) }()
	stopped := false
	ls.stop = func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	t.Cleanup(ls.stop)
	return ls
}

// startLeased starts a lease server and a device leased there.
func startLeased(t *testing.T, idle time.Duration) (*leaseServer, *rawNode, transport.Lease) {
	t.Helper()
	key, _ := identity.Generate()
	ls := startLeaseServer(t, key, "127.0.0.1:0", idle)
	dev := dialServer(t, key, ls.relay)
	return ls, dev, dev.leased(t, ls)
}

// leased registers n with a lease at ls, keeps it once (seq 1) and closes
// its connection.
func (n *rawNode) leased(t *testing.T, ls *leaseServer) transport.Lease {
	t.Helper()
	l := n.grant(t)
	if !keep(t, n.node, ls, l, 1, false, 2*time.Second) {
		t.Fatal("first keep unanswered")
	}
	n.conn.CloseWithError(0, "leased")
	return l
}

// grant registers n with a lease and returns it, the connection open.
func (n *rawNode) grant(t *testing.T) transport.Lease {
	t.Helper()
	req := wire.Register{Endpoint: n.node.Endpoint(), Nonce: n.node.EndpointNonce(), Publishes: true, Lease: true}
	status, reply := n.ask(t, wire.ReqRegister, req.Body())
	if status != wire.StatusOK {
		t.Fatalf("register: %s", wire.StatusText(status))
	}
	obs, g, err := wire.ParseRegistered(reply)
	if err != nil || g == nil || obs != n.node.LocalAddr() || g.TTL != DefaultLeaseTTL {
		t.Fatalf("register reply: %s, %+v, %v", obs, g, err)
	}
	return transport.Lease{Endpoint: req.Endpoint, ID: n.node.Key().ID(), Device: true, Expires: g.Expires, Key: g.Key}
}

// keep sends keep seq of l from node and reports whether the relay
// answered it within wait.
func keep(t *testing.T, node *transport.Node, ls *leaseServer, l transport.Lease, seq uint64, release bool, wait time.Duration) bool {
	t.Helper()
	send := node.KeepLease
	if release {
		send = node.ReleaseLease
	}
	if err := send(ls.relay.Socket().LocalAddr(), l, seq); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(wait)
	for {
		select {
		case got := <-node.Kept():
			if got == seq {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A leased registration outlives its connection while keeps come, and
// ends when they stop.
func TestLeaseOutlivesConnection(t *testing.T) {
	const idle = 600 * time.Millisecond
	ls, dev, l := startLeased(t, idle)
	var last time.Time
	for seq := uint64(2); seq <= 5; seq++ {
		time.Sleep(idle / 3)
		if !keep(t, dev.node, ls, l, seq, false, 2*time.Second) {
			t.Fatalf("keep %d unanswered", seq)
		}
		last = time.Now()
	}
	if ls.presence.Len() != 1 || ls.relay.Attached() != 1 {
		t.Fatalf("after its connection closed and %v of keeps: %d records, %d attached; want 1, 1", 4*idle/3, ls.presence.Len(), ls.relay.Attached())
	}
	waitUntil(t, "the idle lease dropped", func() bool { return ls.presence.Len() == 0 && ls.relay.Attached() == 0 })
	t.Logf("lease dropped %v after the last keep (idle %v)", time.Since(last).Round(time.Millisecond), idle)
}

// Keeps must grow: a replay moves nothing, from anywhere; a newer keep
// from a new address (a NAT that moved the device) moves the route.
func TestLeaseReplayAndMove(t *testing.T) {
	ls, dev, l := startLeased(t, time.Minute)
	if !keep(t, dev.node, ls, l, 5, false, 2*time.Second) {
		t.Fatal("keep 5 unanswered")
	}
	if keep(t, dev.node, ls, l, 5, false, 300*time.Millisecond) || keep(t, dev.node, ls, l, 4, false, 300*time.Millisecond) {
		t.Fatal("a replayed keep was answered")
	}
	// The "NAT" moves the device: the same lease from another socket.
	k2, _ := identity.Generate()
	moved, err := transport.NewNode(k2, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	if keep(t, moved, ls, l, 5, false, 300*time.Millisecond) {
		t.Fatal("a replay from another address was answered")
	}
	if at, _ := ls.relay.Route(l.Endpoint); at != dev.node.LocalAddr() {
		t.Fatalf("a replay moved the route to %s", at)
	}
	if !keep(t, moved, ls, l, 6, false, 2*time.Second) {
		t.Fatal("a newer keep from a new address unanswered")
	}
	if at, _ := ls.relay.Route(l.Endpoint); at != moved.LocalAddr() {
		t.Fatalf("route at %s after the move, want %s", at, moved.LocalAddr())
	}
	if !keep(t, dev.node, ls, l, 7, false, 2*time.Second) {
		t.Fatal("keep 7 unanswered")
	}
	if at, _ := ls.relay.Route(l.Endpoint); at != dev.node.LocalAddr() {
		t.Fatalf("route at %s after moving back", at)
	}
	// Another key's lease of the same endpoint: the MAC cannot hold.
	squat := l
	squat.ID = k2.ID()
	if keep(t, moved, ls, squat, 8, false, 300*time.Millisecond) {
		t.Fatal("another ID's keep of the endpoint was answered")
	}
}

// A release ends the registration at once; a replay of it registers
// nothing again.
func TestLeaseRelease(t *testing.T) {
	ls, dev, l := startLeased(t, time.Minute)
	if !keep(t, dev.node, ls, l, 2, true, 2*time.Second) {
		t.Fatal("release unanswered")
	}
	waitUntil(t, "the released device's record removed", func() bool { return ls.presence.Len() == 0 })
	if ls.relay.Attached() != 0 {
		t.Fatal("the released endpoint is still attached")
	}
	if keep(t, dev.node, ls, l, 3, true, 300*time.Millisecond) {
		t.Fatal("a release of no registration was answered")
	}
	if ls.relay.Attached() != 0 || ls.presence.Len() != 0 {
		t.Fatal("a release registered the device again")
	}
}

// A relay that restarted with the same key takes a leased device's next
// keep as its registration again, with no handshake; one with another key
// does not.
func TestLeaseSurvivesRelayRestart(t *testing.T) {
	key, _ := identity.Generate()
	ls := startLeaseServer(t, key, "127.0.0.1:0", time.Minute)
	addr := ls.relay.Socket().LocalAddr().String()
	dev := dialServer(t, key, ls.relay)
	l := dev.leased(t, ls)
	ls.stop()

	otherKey, _ := identity.Generate()
	other := startLeaseServer(t, otherKey, addr, time.Minute)
	dialServer(t, otherKey, other.relay) // it listens
	if keep(t, dev.node, other, l, 2, false, 300*time.Millisecond) {
		t.Fatal("a relay with another key took the lease")
	}
	if other.relay.Attached() != 0 {
		t.Fatal("a relay with another key attached the device")
	}
	other.stop()

	again := startLeaseServer(t, key, addr, time.Minute)
	dialServer(t, key, again.relay)
	if !keep(t, dev.node, again, l, 3, false, 2*time.Second) {
		t.Fatal("the restarted relay did not take the lease")
	}
	waitUntil(t, "the device's record written again", func() bool {
		rec, err := again.presence.Get(context.Background(), l.ID)
		return err == nil && rec.Endpoint == l.Endpoint
	})
	if at, ok := again.relay.Route(l.Endpoint); !ok || at != dev.node.LocalAddr() {
		t.Fatalf("route %s, %v after the restart", at, ok)
	}
}

// A grant the node never kept ends with the connection (the node may
// never have got it); one held on an open connection is not swept.
func TestLeaseNotKeptEndsWithConnection(t *testing.T) {
	key, _ := identity.Generate()
	const idle = 300 * time.Millisecond
	ls := startLeaseServer(t, key, "127.0.0.1:0", idle)
	dev := dialServer(t, key, ls.relay)
	dev.grant(t)
	time.Sleep(3 * idle)
	if ls.presence.Len() != 1 || ls.relay.Attached() != 1 {
		t.Fatalf("a registration on an open connection was swept: %d records, %d attached", ls.presence.Len(), ls.relay.Attached())
	}
	dev.conn.CloseWithError(0, "")
	waitUntil(t, "the unkept lease dropped with its connection", func() bool { return ls.presence.Len() == 0 && ls.relay.Attached() == 0 })
}

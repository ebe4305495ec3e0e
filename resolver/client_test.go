package resolver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver/internal/wire"
	"github.com/tunnel-dev/tunnel/resolver/registry"
	"github.com/tunnel-dev/tunnel/transport"
)

// rendezvous runs a registry on a loopback relay until the test ends.
type rendezvous struct {
	key      *identity.Key
	srv      *registry.Server
	relay    *transport.Relay
	presence *registry.MemoryPresence
	addr     RelayAddr
	stop     func()
}

func startRendezvous(t *testing.T, listen string) *rendezvous {
	t.Helper()
	key, _ := identity.Generate()
	return startRendezvousKey(t, listen, key)
}

func startRendezvousKey(t *testing.T, listen string, key *identity.Key) *rendezvous {
	t.Helper()
	return startRendezvousWith(t, listen, key, nil)
}

// startRendezvousWith starts a rendezvous node with key (a new one if
// nil) whose server set changes before it serves.
func startRendezvousWith(t *testing.T, listen string, key *identity.Key, set func(*registry.Server)) *rendezvous {
	t.Helper()
	if key == nil {
		key, _ = identity.Generate()
	}
	relay, err := transport.ListenRelay(listen)
	if err != nil {
		t.Fatal(err)
	}
	p := registry.NewMemoryPresence()
	srv := &registry.Server{Key: key, Relay: relay, Presence: p, Log: zerolog.Nop()}
	if set != nil {
		set(srv)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); relay.Close(); close(done) }()
	var once sync.Once
	rv := &rendezvous{key: key, srv: srv, relay: relay, presence: p,
		addr: RelayAddr{ID: key.ID(), HostPort: relay.Socket().LocalAddr().String()}}
	rv.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(rv.stop)
	return rv
}

// startClient starts a node on addr and waits until it registered.
func startClient(t *testing.T, addr RelayAddr, publishes bool) (*Client, *transport.Node) {
	t.Helper()
	c, nd := runClient(t, addr, publishes)
	wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer wcancel()
	if err := c.WaitRegistered(wctx); err != nil {
		t.Fatalf("node did not register: %v", err)
	}
	return c, nd
}

// runClient starts a node on addr, running until the test ends.
func runClient(t *testing.T, addr RelayAddr, publishes bool) (*Client, *transport.Node) {
	t.Helper()
	key, _ := identity.Generate()
	nd, err := transport.NewNode(key, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(nd, Config{Relays: []RelayAddr{addr}, Publishes: publishes, Log: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; nd.Close() })
	return c, nd
}

func TestRegisterAndLookup(t *testing.T) {
	rv := startRendezvous(t, "127.0.0.1:0")
	_, dev := startClient(t, rv.addr, true)
	cli, _ := startClient(t, rv.addr, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ep, err := cli.Lookup(ctx, dev.Key().ID())
	if err != nil || ep != dev.Endpoint() {
		t.Fatalf("lookup = %v, %v; want %v", ep, err, dev.Endpoint())
	}
	stranger, _ := identity.Generate()
	start := time.Now()
	if _, err := cli.Lookup(ctx, stranger.ID()); !errors.Is(err, ErrOffline) {
		t.Fatalf("lookup of unknown device: %v, want ErrOffline", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("unknown device took %v to fail", d)
	}
	// A node that does not publish is not a device.
	if _, err := cli.Lookup(ctx, cli.Node().Key().ID()); !errors.Is(err, ErrOffline) {
		t.Fatalf("lookup of a client: %v, want ErrOffline", err)
	}
}

func TestDeviceGoneIsOffline(t *testing.T) {
	rv := startRendezvous(t, "127.0.0.1:0")
	cli, _ := startClient(t, rv.addr, false)
	key, _ := identity.Generate()
	nd, _ := transport.NewNode(key, "127.0.0.1:0")
	dc := NewClient(nd, Config{Relays: []RelayAddr{rv.addr}, Publishes: true, Log: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { dc.Run(ctx); close(done) }()
	waitFor(t, func() bool { return rv.presence.Len() == 1 })
	cancel()
	<-done
	nd.Close()
	waitFor(t, func() bool { return rv.presence.Len() == 0 })
	lctx, lcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer lcancel()
	if _, err := cli.Lookup(lctx, key.ID()); !errors.Is(err, ErrOffline) {
		t.Fatalf("lookup after the device left: %v", err)
	}
}

func TestWrongRelayKeyRefused(t *testing.T) {
	rv := startRendezvous(t, "127.0.0.1:0")
	other, _ := identity.Generate()
	key, _ := identity.Generate()
	nd, _ := transport.NewNode(key, "127.0.0.1:0")
	defer nd.Close()
	c := NewClient(nd, Config{Relays: []RelayAddr{{ID: other.ID(), HostPort: rv.addr.HostPort}}, Log: zerolog.Nop()})
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	if err := c.WaitRegistered(ctx); err == nil {
		t.Error("registered with a relay proving the wrong key")
	}
	<-done
	if rv.relay.Attached() != 0 {
		t.Fatal("relay attached a node that refused it")
	}
}

func TestRelayRestartReregisters(t *testing.T) {
	rv := startRendezvous(t, "127.0.0.1:0")
	listen := rv.addr.HostPort
	_, dev := startClient(t, rv.addr, true)
	cli, _ := startClient(t, rv.addr, false)
	rv.stop()
	start := time.Now()
	rv2 := startRendezvousKey(t, listen, rv.key)
	waitFor(t, func() bool { return rv2.presence.Len() == 1 })
	t.Logf("device re-registered %v after the relay restarted", time.Since(start).Round(time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	ep, err := cli.Lookup(ctx, dev.Key().ID())
	if err != nil || ep != dev.Endpoint() {
		t.Fatalf("lookup after restart: %v, %v", ep, err)
	}
}

func TestRegistryUnavailableIsFast(t *testing.T) {
	key, _ := identity.Generate()
	nd, _ := transport.NewNode(key, "127.0.0.1:0")
	defer nd.Close()
	// Nothing listens on this relay address.
	c := NewClient(nd, Config{Relays: []RelayAddr{{HostPort: "127.0.0.1:9"}}, Log: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	start := time.Now()
	_, err := c.Lookup(context.Background(), key.ID())
	if !errors.Is(err, ErrRegistryUnavailable) {
		t.Fatalf("err %v, want ErrRegistryUnavailable", err)
	}
	if d := time.Since(start); d > lookupWait+time.Second {
		t.Fatalf("took %v", d)
	}
}

func TestParseRelayAddr(t *testing.T) {
	k, _ := identity.Generate()
	good := []string{"127.0.0.1:7443", "relay.example:7443", "[::1]:7443", k.ID().String() + "@127.0.0.1:7443"}
	for _, s := range good {
		a, err := ParseRelayAddr(s)
		if err != nil || a.String() != s {
			t.Errorf("ParseRelayAddr(%q) = %v, %v", s, a, err)
		}
	}
	for _, s := range []string{"", "7443", "host", ":7443", "host:0", "host:99999", "host:abc", "bad@127.0.0.1:7443", "@127.0.0.1:7443"} {
		if _, err := ParseRelayAddr(s); err == nil {
			t.Errorf("ParseRelayAddr(%q) accepted", s)
		}
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

// The squat: after a relay restart a stranger, who learned the device's
// endpoint from a lookup, races the device to register it. The relay
// refuses the stranger, and the device is back within one heartbeat.
func TestSquatAfterRelayRestart(t *testing.T) {
	rv := startRendezvous(t, "127.0.0.1:0")
	listen := rv.addr.HostPort
	_, dev := startClient(t, rv.addr, true)
	rv.stop()
	rv2 := startRendezvousKey(t, listen, rv.key)
	start := time.Now()

	sk, _ := identity.Generate()
	stranger, err := transport.NewNode(sk, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	conn, err := stranger.DialRelay(ctx, rv2.relay.Socket().LocalAddr(), rv.key.ID())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseWithError(0, "")
	// The stranger even knows the nonce: the endpoint is still not its.
	status, _, err := request(ctx, conn, wire.ReqRegister, wire.Register{Endpoint: dev.Endpoint(), Nonce: dev.EndpointNonce(), Publishes: true}.Body())
	if err != nil || status != wire.StatusBadRequest {
		t.Fatalf("the stranger's registration of the device's endpoint: %s, %v; want refused", wire.StatusText(status), err)
	}
	waitFor(t, func() bool { return rv2.presence.Len() == 1 })
	back := time.Since(start)
	if back > transport.RelayPing+pingTimeout+2*time.Second {
		t.Fatalf("device back %v after the restart, want within one heartbeat", back)
	}
	t.Logf("device back %v after the relay restarted, the stranger refused", back.Round(time.Millisecond))
	cli, _ := startClient(t, rv2.addr, false)
	if ep, err := cli.Lookup(ctx, dev.Key().ID()); err != nil || ep != dev.Endpoint() {
		t.Fatalf("lookup after the squat: %v, %v", ep, err)
	}
}

// A device registers on a lease: the relay holds no connection for it
// once it is registered, it stays registered and found, it looks up on a
// connection of its own, and it renews the lease when half is gone.
func TestDeviceHoldsLease(t *testing.T) {
	rv := startRendezvousWith(t, "127.0.0.1:0", nil, func(s *registry.Server) { s.LeaseTTL = 2 * time.Second })
	cli, _ := startClient(t, rv.addr, false)
	devc, dev := startClient(t, rv.addr, true)
	waitFor(t, func() bool { return rv.srv.Stats.Conns.Load() == 1 })
	if _, ok := devc.Home(); !ok {
		t.Fatal("the leased device says it is not registered")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// Renewals (TTL 2 s: one a second), each a registration, with the
	// device found throughout.
	for devc.Registrations() < 4 {
		if ep, err := cli.Lookup(ctx, dev.Key().ID()); err != nil || ep != dev.Endpoint() {
			t.Fatalf("lookup of the leased device: %v, %v (after %d registrations)", ep, err, devc.Registrations())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The device's own lookup dials, asks, and closes.
	if ep, err := devc.Lookup(ctx, cli.Node().Key().ID()); !errors.Is(err, ErrOffline) {
		t.Fatalf("the device's lookup of a client: %v, %v; want ErrOffline", ep, err)
	}
	if ep, err := devc.Lookup(ctx, dev.Key().ID()); err != nil || ep != dev.Endpoint() {
		t.Fatalf("the device's lookup of itself: %v, %v", ep, err)
	}
	waitFor(t, func() bool { return rv.srv.Stats.Conns.Load() == 1 })
	// Ended: the device's registration connection and its two lookups'.
	if n := rv.srv.Stats.Closed.Load(); n < 3 {
		t.Fatalf("%d connections counted closed, want at least 3", n)
	}
}

// A device on a relay that grants no lease (an older one) holds its
// registration on its connection, as before.
func TestDeviceWithoutLease(t *testing.T) {
	rv := startRendezvousWith(t, "127.0.0.1:0", nil, func(s *registry.Server) { s.NoLeases = true })
	cli, _ := startClient(t, rv.addr, false)
	_, dev := startClient(t, rv.addr, true)
	time.Sleep(300 * time.Millisecond)
	if n := rv.srv.Stats.Conns.Load(); n != 2 {
		t.Fatalf("%d connections at a relay without leases, want 2", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if ep, err := cli.Lookup(ctx, dev.Key().ID()); err != nil || ep != dev.Endpoint() {
		t.Fatalf("lookup: %v, %v", ep, err)
	}
}

// A device whose keeps do not reach the relay (a network that drops
// them; here a forwarder in front of the relay) holds its registration on
// its connection instead of a lease.
func TestDeviceKeepsDroppedStaysOnConnection(t *testing.T) {
	rv := startRendezvous(t, "127.0.0.1:0")
	front, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	relayAddr := rv.relay.Socket().LocalAddr()
	var dev atomic.Pointer[netip.AddrPort]
	var wg sync.WaitGroup
	t.Cleanup(func() { front.Close(); back.Close(); wg.Wait() })
	wg.Go(func() { // device → relay, keeps dropped
		buf := make([]byte, 2048)
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			dev.Store(&from)
			if n > 0 && buf[0] == 0x0A {
				continue
			}
			back.WriteToUDPAddrPort(buf[:n], relayAddr)
		}
	})
	wg.Go(func() { // relay → device
		buf := make([]byte, 2048)
		for {
			n, _, err := back.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if to := dev.Load(); to != nil {
				front.WriteToUDPAddrPort(buf[:n], *to)
			}
		}
	})
	via := RelayAddr{ID: rv.key.ID(), HostPort: front.LocalAddr().String()}
	c, nd := runClient(t, via, true)
	// The first keep goes unanswered for pingTimeout before the device
	// settles on its connection.
	wctx, wcancel := context.WithTimeout(context.Background(), pingTimeout+5*time.Second)
	defer wcancel()
	if err := c.WaitRegistered(wctx); err != nil {
		t.Fatalf("device not registered: %v", err)
	}
	c.mu.Lock()
	onConn := c.conn != nil && !c.leased
	c.mu.Unlock()
	if !onConn {
		t.Fatal("the device is on a lease its relay never answered")
	}
	if n := rv.srv.Stats.Conns.Load(); n != 1 {
		t.Fatalf("%d connections at the relay, want the device's", n)
	}
	cli, _ := startClient(t, rv.addr, false)
	if ep, err := cli.Lookup(wctx, nd.Key().ID()); err != nil || ep != nd.Endpoint() {
		t.Fatalf("lookup: %v, %v", ep, err)
	}
}

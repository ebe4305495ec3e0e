package dialer_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/resolver/registry"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/test/tcptest"
	"github.com/tunnel-dev/tunnel/transport"
)

// world is a rendezvous node, one device agent and one client node with
// its dialer, all real, on loopback, started as the product starts them.
type world struct {
	relay  *roles.Relay
	device *roles.Device
	client *roles.Node
	dialer *dialer.Dialer
	// cred is what the client presents for any fleet (nil: nothing).
	cred atomic.Pointer[[]byte]
	// addDevice starts another device agent on the same rendezvous node.
	addDevice func(t *testing.T, fleet identity.ID, ports []peer.Port) *roles.Device
}

func startWorld(t *testing.T, ports []peer.Port, presence registry.Presence) *world {
	return startWorldPath(t, ports, presence, transport.PathAuto)
}

func startWorldPath(t *testing.T, ports []peer.Port, presence registry.Presence, mode transport.PathMode) *world {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &world{}
	var stops []func()
	t.Cleanup(func() {
		cancel()
		for _, stop := range slices.Backward(stops) {
			stop()
		}
	})
	rkey, _ := identity.Generate()
	relay, err := roles.StartRelay(ctx, roles.RelayConfig{Key: rkey, Listen: "127.0.0.1:0", Presence: presence, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	w.relay = relay
	stops = append(stops, func() { relay.Wait() })
	w.addDevice = func(t *testing.T, fleetID identity.ID, ports []peer.Port) *roles.Device {
		k, _ := identity.Generate()
		d, err := roles.StartDevice(ctx, roles.DeviceConfig{Key: k, Relays: []resolver.RelayAddr{relay.Addr()},
			Ports: ports, Fleet: fleetID, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		stops = append(stops, func() { d.Wait() })
		waitRegistered(t, d.Node)
		return d
	}
	w.device = w.addDevice(t, identity.ID{}, ports)
	ck, _ := identity.Generate()
	w.client, err = roles.StartNode(ctx, roles.NodeConfig{Key: ck, Listen: "127.0.0.1:0",
		Relays: []resolver.RelayAddr{relay.Addr()}, Path: mode, Log: zerolog.Nop(),
		Credentials: func(identity.ID) []byte {
			if c := w.cred.Load(); c != nil {
				return *c
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	stops = append(stops, w.client.Close)
	waitRegistered(t, w.client)
	w.dialer = w.client.Dialer
	return w
}

func waitRegistered(t *testing.T, n *roles.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := n.WaitRegistered(ctx); err != nil {
		t.Fatalf("node did not register: %v", err)
	}
}

func deviceID(d *roles.Device) identity.ID { return d.Node.Transport.Key().ID() }

func TestDialer(t *testing.T) {
	echo := tcptest.Echo(t)
	w := startWorld(t, []peer.Port{{Remote: 22, Target: echo}, {Remote: 9, Target: tcptest.ClosedPort(t)}}, nil)
	name := deviceID(w.device).String() + ".tunnel"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("echo with half-close", func(t *testing.T) {
		s, err := w.dialer.Dial(ctx, name, 22)
		if err != nil {
			t.Fatal(err)
		}
		payload := make([]byte, 2<<20)
		rand.Read(payload)
		go func() { s.Write(payload); s.CloseWrite() }()
		got, err := io.ReadAll(s)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("echo: %d bytes, err %v", len(got), err)
		}
		s.Close()
	})
	t.Run("concurrent streams share one connection", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Go(func() {
				s, err := w.dialer.Dial(ctx, name, 22)
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				msg := []byte("stream " + strconv.Itoa(i))
				s.Write(msg)
				s.CloseWrite()
				got, err := io.ReadAll(s)
				if err != nil || !bytes.Equal(got, msg) {
					errs <- errors.New("bad echo")
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if n := len(w.client.Transport.Peers()); n != 1 {
			t.Fatalf("%d device connections, want 1", n)
		}
	})
	unknown, _ := identity.Generate()
	cases := []struct {
		name string
		host string
		port uint16
		want dialer.Outcome
	}{
		{"unpublished port", name, 23, dialer.NotPublished},
		{"local service down", name, 9, dialer.Refused},
		{"unknown device", unknown.ID().String() + ".tunnel", 22, dialer.Offline},
		{"weak key as ID", "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.tunnel", 22, dialer.MalformedName},
		{"malformed name", "abc.tunnel", 22, dialer.MalformedName},
		{"not .tunnel", "example.com", 80, dialer.NotTunnel},
		{"IP literal as name", "127.0.0.1", 80, dialer.NotTunnel},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := w.dialer.Dial(ctx, c.host, c.port)
			if got := dialer.Classify(err); got != c.want {
				t.Fatalf("outcome %v (%v), want %v", got, err, c.want)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v, want well under a second", d)
			}
		})
	}
}

// A registry that points a client at another device must not get it
// connected: the client checks the key against the name it dialed.
func TestLyingRegistryCannotImpersonate(t *testing.T) {
	lp := &lyingPresence{}
	w := startWorld(t, []peer.Port{{Remote: 22, Target: tcptest.Echo(t)}}, lp)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The honest case works through the same registry...
	s, err := w.dialer.DialDevice(ctx, deviceID(w.device), 22)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// ...but a lookup of another ID, answered with this device's endpoint,
	// fails the handshake.
	victim, _ := identity.Generate()
	_, err = w.dialer.DialDevice(ctx, victim.ID(), 22)
	if !errors.Is(err, transport.ErrPeerMismatch) {
		t.Fatalf("err %v, want ErrPeerMismatch", err)
	}
}

// lyingPresence answers every lookup with the last record registered,
// whatever ID was asked: a registry that sends clients where it likes.
type lyingPresence struct {
	mu   sync.Mutex
	last *registry.Record
}

func (l *lyingPresence) Set(_ context.Context, _ identity.ID, rec registry.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = &rec
	return nil
}

func (l *lyingPresence) Delete(context.Context, identity.ID, registry.Record) error { return nil }

func (l *lyingPresence) Get(context.Context, identity.ID) (registry.Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		return registry.Record{}, registry.ErrNotFound
	}
	return *l.last, nil
}

// Access modes, decided by the device on the client's key.
func TestAccessModes(t *testing.T) {
	echo := tcptest.Echo(t)
	fleetKey, _ := identity.Generate()
	otherFleet, _ := identity.Generate()
	// The client key is made first so that a private port can list it.
	w := startWorld(t, nil, nil)
	me := w.client.Transport.Key().ID()
	stranger, _ := identity.Generate()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A second device with every mode, reached by the same client.
	dev := w.addDevice(t, fleetKey.ID(), []peer.Port{
		{Remote: 80, Target: echo, Access: peer.Public},
		{Remote: 22, Target: echo, Access: peer.Private, Allowed: []identity.ID{me}},
		{Remote: 23, Target: echo, Access: peer.Private, Allowed: []identity.ID{stranger.ID()}},
		{Remote: 24, Target: echo, Access: peer.Protected},
	})
	now := time.Now()
	cases := []struct {
		name string
		port uint16
		cred *fleet.Credential
		want dialer.Outcome
	}{
		{"public", 80, nil, dialer.OK},
		{"private, listed", 22, nil, dialer.OK},
		{"private, not listed", 23, nil, dialer.Denied},
		{"protected, no credential", 24, nil, dialer.Denied},
		{"protected, member", 24, issue(t, fleetKey, me, time.Hour, now), dialer.OK},
		{"protected, other fleet", 24, issue(t, otherFleet, me, time.Hour, now), dialer.Denied},
		{"protected, expired", 24, issue(t, fleetKey, me, time.Hour, now.Add(-2*time.Hour)), dialer.Denied},
		{"protected, someone else's credential", 24, issue(t, fleetKey, stranger.ID(), time.Hour, now), dialer.Denied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.cred == nil {
				w.cred.Store(nil)
			} else {
				wire := c.cred.Wire()
				w.cred.Store(&wire)
			}
			s, err := w.dialer.DialDevice(ctx, deviceID(dev), c.port)
			if got := dialer.Classify(err); got != c.want {
				t.Fatalf("outcome %v (%v), want %v", got, err, c.want)
			}
			if err == nil {
				s.Write([]byte("x"))
				s.CloseWrite()
				b, _ := io.ReadAll(s)
				s.Close()
				if string(b) != "x" {
					t.Fatalf("echo %q", b)
				}
			}
		})
	}
}

func issue(t *testing.T, fleetKey *identity.Key, member identity.ID, validFor time.Duration, now time.Time) *fleet.Credential {
	t.Helper()
	c, err := fleet.Issue(fleetKey, member, validFor, now)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A relay that replays every packet a client sends (its stream opens
// included) gets nothing extra through: QUIC drops replayed packets, so the
// device opens its local service once per stream the client really opened.
func TestReplayedStreamOpenRefused(t *testing.T) {
	var accepted atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var swg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); swg.Wait() })
	swg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			swg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	w := startWorld(t, []peer.Port{{Remote: 22, Target: ln.Addr().String()}}, nil)

	// The client reaches the relay through a middlebox that sends every
	// datagram twice, the copy 50 ms later.
	relayUDP, _ := net.ResolveUDPAddr("udp", w.relay.Addr().HostPort)
	mb, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, relayUDP)
	if err != nil {
		t.Fatal(err)
	}
	var mwg sync.WaitGroup
	t.Cleanup(func() { mb.Close(); up.Close(); mwg.Wait() })
	var client atomic.Pointer[net.UDPAddr]
	var replayed atomic.Int64
	mwg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := mb.ReadFromUDP(buf)
			if err != nil {
				return
			}
			client.Store(from)
			pkt := append([]byte(nil), buf[:n]...)
			up.Write(pkt)
			mwg.Go(func() {
				time.Sleep(50 * time.Millisecond)
				if _, err := up.Write(pkt); err == nil {
					replayed.Add(1)
				}
			})
		}
	})
	mwg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			if c := client.Load(); c != nil {
				mb.WriteToUDP(buf[:n], c)
			}
		}
	})
	k, _ := identity.Generate()
	ctx, cancel := context.WithCancel(context.Background())
	// PathRelay: every packet crosses the middlebox.
	nd, err := roles.StartNode(ctx, roles.NodeConfig{Key: k, Listen: "127.0.0.1:0", Path: transport.PathRelay, Log: zerolog.Nop(),
		Relays: []resolver.RelayAddr{{ID: w.relay.Addr().ID, HostPort: mb.LocalAddr().String()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close(); cancel() })
	waitRegistered(t, nd)
	d := nd.Dialer
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	const streams = 5
	for i := range streams {
		s, err := d.DialDevice(dctx, deviceID(w.device), 22)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte(fmt.Sprintf("stream %d", i))
		s.Write(msg)
		s.CloseWrite()
		got, _ := io.ReadAll(s)
		s.Close()
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	time.Sleep(300 * time.Millisecond) // let the replays arrive
	if replayed.Load() == 0 {
		t.Fatal("the middlebox replayed nothing")
	}
	if n := accepted.Load(); n != streams {
		t.Fatalf("device opened its service %d times for %d streams (%d packets replayed)", n, streams, replayed.Load())
	}
}

// With --path direct the dialer waits for a direct path before the first
// stream, so no stream byte crosses the relay.
func TestPathDirectMode(t *testing.T) {
	w := startWorldPath(t, []peer.Port{{Remote: 22, Target: tcptest.Echo(t)}}, nil, transport.PathDirect)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := w.dialer.DialDevice(ctx, deviceID(w.device), 22)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cn := w.client.Transport
	peers := cn.Peers()
	if len(peers) != 1 || !peers[0].Direct.IsValid() {
		t.Fatalf("stream opened without a direct path: %+v", peers)
	}
	before := cn.RelayedOut.Load()
	s.Write(bytes.Repeat([]byte("x"), 1<<20))
	s.CloseWrite()
	got, _ := io.ReadAll(s)
	if len(got) != 1<<20 {
		t.Fatalf("echo %d bytes", len(got))
	}
	if d := cn.RelayedOut.Load() - before; d != 0 {
		t.Fatalf("%d stream bytes crossed the relay in direct mode", d)
	}
}

// --path direct to a protected port: the stream's opening (header,
// challenge, credential) crosses the relay — it is what lets the device
// look for a direct path — and its payload waits for the direct path.
func TestPathDirectProtected(t *testing.T) {
	fleetKey, _ := identity.Generate()
	w := startWorldPath(t, nil, nil, transport.PathDirect)
	dev := w.addDevice(t, fleetKey.ID(), []peer.Port{{Remote: 24, Target: tcptest.Echo(t), Access: peer.Protected}})
	cred := issue(t, fleetKey, w.client.Transport.Key().ID(), time.Hour, time.Now()).Wire()
	w.cred.Store(&cred)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := w.dialer.DialDevice(ctx, deviceID(dev), 24)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cn := w.client.Transport
	before := cn.RelayedOut.Load()
	s.Write(bytes.Repeat([]byte("x"), 1<<20))
	s.CloseWrite()
	if got, _ := io.ReadAll(s); len(got) != 1<<20 {
		t.Fatalf("echo %d bytes", len(got))
	}
	if d := cn.RelayedOut.Load() - before; d != 0 {
		t.Fatalf("%d payload bytes crossed the relay in direct mode", d)
	}
}

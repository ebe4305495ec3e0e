package socks

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
)

// world is a rendezvous node, one device agent and one client dialer, all
// real, on loopback.
type world struct {
	relay    resolver.RelayAddr
	presence resolver.Presence
	device   *transport.Node
	dialer   *TunnelDialer
	// addDevice starts another device agent on the same rendezvous node.
	addDevice func(t *testing.T, fleet identity.ID, ports []peer.Port) *transport.Node
}

func startWorld(t *testing.T, ports []peer.Port, presence resolver.Presence) *world {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	rkey, _ := identity.Generate()
	relay, err := transport.ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if presence == nil {
		presence = resolver.NewMemoryPresence()
	}
	srv := &resolver.Server{Key: rkey, Relay: relay, Presence: presence, Log: zerolog.Nop()}
	wg.Go(func() { srv.Serve(ctx); relay.Close() })
	w := &world{relay: resolver.RelayAddr{ID: rkey.ID(), HostPort: relay.Socket().LocalAddr().String()}, presence: presence}

	node := func(publishes bool) (*transport.Node, *resolver.Client) {
		k, _ := identity.Generate()
		nd, err := transport.NewNode(k, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		up := make(chan struct{}, 8)
		c := &resolver.Client{Node: nd, Relay: w.relay, Publishes: publishes, Log: zerolog.Nop(),
			OnRegistered: func(string) { up <- struct{}{} }}
		wg.Go(func() { c.Run(ctx); nd.Close() })
		select {
		case <-up:
		case <-time.After(5 * time.Second):
			t.Fatal("node did not register")
		}
		return nd, c
	}
	w.addDevice = func(t *testing.T, fleetID identity.ID, ports []peer.Port) *transport.Node {
		nd, _ := node(true)
		agent := &peer.Agent{Node: nd, Ports: ports, Fleet: fleetID, Log: zerolog.Nop(), DialTimeout: time.Second}
		wg.Go(func() { agent.Serve(ctx) })
		return nd
	}
	w.device = w.addDevice(t, identity.ID{}, ports)
	cnode, cres := node(false)
	w.dialer = &TunnelDialer{Node: cnode, Resolver: cres, Log: zerolog.Nop()}
	t.Cleanup(func() { w.dialer.Close() })
	return w
}

// echoTCP runs a TCP echo server that half-closes after echoing.
func echoTCP(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
				c.Close()
			})
		}
	})
	return ln.Addr().String()
}

func closedPort(t *testing.T) string {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestTunnelDialer(t *testing.T) {
	echo := echoTCP(t)
	w := startWorld(t, []peer.Port{{Remote: 22, Target: echo}, {Remote: 9, Target: closedPort(t)}}, nil)
	name := w.device.Key().ID().String() + ".tunnel"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	t.Run("echo with half-close", func(t *testing.T) {
		s, err := w.dialer.Dial(ctx, Request{Cmd: CmdConnect, Host: name, Port: 22})
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
				s, err := w.dialer.Dial(ctx, Request{Cmd: CmdConnect, Host: name, Port: 22})
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
		w.dialer.mu.Lock()
		n := len(w.dialer.peers)
		w.dialer.mu.Unlock()
		if n != 1 {
			t.Fatalf("%d device connections, want 1", n)
		}
	})
	cases := []struct {
		name string
		req  Request
		want byte
	}{
		{"unpublished port", Request{Cmd: CmdConnect, Host: name, Port: 23}, ReplyConnectionRefused},
		{"local service down", Request{Cmd: CmdConnect, Host: name, Port: 9}, ReplyConnectionRefused},
		{"unknown device", Request{Cmd: CmdConnect, Host: "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.tunnel", Port: 22}, ReplyHostUnreachable},
		{"malformed name", Request{Cmd: CmdConnect, Host: "abc.tunnel", Port: 22}, ReplyHostUnreachable},
		{"not .tunnel", Request{Cmd: CmdConnect, Host: "example.com", Port: 80}, ReplyNotAllowed},
		{"IP literal as name", Request{Cmd: CmdConnect, Host: "127.0.0.1", Port: 80}, ReplyNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			_, err := w.dialer.Dial(ctx, c.req)
			if got := ReplyCode(err); got != c.want {
				t.Fatalf("reply %#x (%v), want %#x", got, err, c.want)
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
	w := startWorld(t, []peer.Port{{Remote: 22, Target: echoTCP(t)}}, lp)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The honest case works through the same registry...
	s, err := w.dialer.DialDevice(ctx, w.device.Key().ID(), 22)
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
	last *resolver.Record
}

func (l *lyingPresence) Set(_ context.Context, _ identity.ID, rec resolver.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.last = &rec
	return nil
}

func (l *lyingPresence) Delete(context.Context, identity.ID, resolver.Record) error { return nil }

func (l *lyingPresence) Get(context.Context, identity.ID) (resolver.Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		return resolver.Record{}, resolver.ErrOffline
	}
	return *l.last, nil
}

// Access modes, decided by the device on the client's key.
func TestAccessModes(t *testing.T) {
	echo := echoTCP(t)
	fleetKey, _ := identity.Generate()
	otherFleet, _ := identity.Generate()
	// The client key is made first so that a private port can list it.
	w := startWorld(t, nil, nil)
	me := w.dialer.Node.Key().ID()
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
		want byte
	}{
		{"public", 80, nil, ReplySucceeded},
		{"private, listed", 22, nil, ReplySucceeded},
		{"private, not listed", 23, nil, ReplyNotAllowed},
		{"protected, no credential", 24, nil, ReplyNotAllowed},
		{"protected, member", 24, issue(t, fleetKey, me, time.Hour, now), ReplySucceeded},
		{"protected, other fleet", 24, issue(t, otherFleet, me, time.Hour, now), ReplyNotAllowed},
		{"protected, expired", 24, issue(t, fleetKey, me, time.Hour, now.Add(-2*time.Hour)), ReplyNotAllowed},
		{"protected, someone else's credential", 24, issue(t, fleetKey, stranger.ID(), time.Hour, now), ReplyNotAllowed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w.dialer.Credential = func(f identity.ID) []byte {
				if c.cred == nil {
					return nil
				}
				return c.cred.Wire()
			}
			s, err := w.dialer.DialDevice(ctx, dev.Key().ID(), c.port)
			if got := ReplyCode(err); got != c.want {
				t.Fatalf("reply %#x (%v), want %#x", got, err, c.want)
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
	relayUDP, _ := net.ResolveUDPAddr("udp", w.relay.HostPort)
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
	nd, err := transport.NewNode(k, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nd.SetMode(transport.PathRelay) // every packet crosses the middlebox
	ctx, cancel := context.WithCancel(context.Background())
	registered := make(chan struct{}, 4)
	rc := &resolver.Client{Node: nd, Relay: resolver.RelayAddr{ID: w.relay.ID, HostPort: mb.LocalAddr().String()},
		Log: zerolog.Nop(), OnRegistered: func(string) { registered <- struct{}{} }}
	var cwg sync.WaitGroup
	cwg.Go(func() { rc.Run(ctx) })
	d := &TunnelDialer{Node: nd, Resolver: rc, Log: zerolog.Nop()}
	t.Cleanup(func() { d.Close(); cancel(); cwg.Wait(); nd.Close() })
	select {
	case <-registered:
	case <-time.After(5 * time.Second):
		t.Fatal("client did not register through the middlebox")
	}
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	const streams = 5
	for i := range streams {
		s, err := d.DialDevice(dctx, w.device.Key().ID(), 22)
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
	w := startWorld(t, []peer.Port{{Remote: 22, Target: echoTCP(t)}}, nil)
	w.dialer.Node.SetMode(transport.PathDirect)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	s, err := w.dialer.DialDevice(ctx, w.device.Key().ID(), 22)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	peers := w.dialer.Node.Peers()
	if len(peers) != 1 || !peers[0].Direct.IsValid() {
		t.Fatalf("stream opened without a direct path: %+v", peers)
	}
	before := w.dialer.Node.RelayedOut.Load()
	s.Write(bytes.Repeat([]byte("x"), 1<<20))
	s.CloseWrite()
	got, _ := io.ReadAll(s)
	if len(got) != 1<<20 {
		t.Fatalf("echo %d bytes", len(got))
	}
	if d := w.dialer.Node.RelayedOut.Load() - before; d != 0 {
		t.Fatalf("%d stream bytes crossed the relay in direct mode", d)
	}
}

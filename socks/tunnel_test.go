package socks

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer"
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
	w.device, _ = node(true)
	agent := &peer.Agent{Node: w.device, Ports: ports, Log: zerolog.Nop(), DialTimeout: time.Second}
	wg.Go(func() { agent.Serve(ctx) })
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

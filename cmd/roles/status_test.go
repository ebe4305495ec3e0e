package roles

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/resolver/registry"
	"github.com/tunnel-dev/tunnel/transport"
)

func newKey(t *testing.T) *identity.Key {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func startRelay(t *testing.T, ctx context.Context, cfg RelayConfig) *Relay {
	t.Helper()
	return startRelayAt(t, ctx, "127.0.0.1:0", cfg)
}

func startRelayAt(t *testing.T, ctx context.Context, listen string, cfg RelayConfig) *Relay {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = newKey(t)
	}
	cfg.Listen, cfg.Log = listen, zerolog.Nop()
	r, err := StartRelay(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Stop() })
	return r
}

func startNode(t *testing.T, ctx context.Context, cfg NodeConfig) *Node {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = newKey(t)
	}
	cfg.Listen, cfg.Log = "127.0.0.1:0", zerolog.Nop()
	n, err := StartNode(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := n.WaitRegistered(wctx); err != nil {
		t.Fatalf("node did not register: %v", err)
	}
	return n
}

// deadRelay is an address where no rendezvous node answers.
func deadRelay(t *testing.T) resolver.RelayAddr {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return resolver.RelayAddr{HostPort: addr}
}

// Status names the rendezvous node in use, not the first one given: with
// --relay A,B and A dead, that is B.
func TestStatusRelayInUse(t *testing.T) {
	ctx := context.Background()
	b := startRelay(t, ctx, RelayConfig{})
	dead := deadRelay(t)
	n := startNode(t, ctx, NodeConfig{Relays: []resolver.RelayAddr{dead, b.Addr()}})
	st := StatusOf("socksd", n)
	if st.Relay != b.Addr().String() || !st.Registered || st.Leased {
		t.Fatalf("status relay %q (registered %v, leased %v), want the one in use, %s, on a connection", st.Relay, st.Registered, st.Leased, b.Addr())
	}
	var out bytes.Buffer
	if err := WriteStatus(&out, []Status{st}); err != nil || !strings.Contains(out.String(), "relay "+b.Addr().String()) {
		t.Fatalf("printed %q (%v), want the relay in use", out.String(), err)
	}
	// And the cores its Go code runs on now.
	if want := fmt.Sprintf("procs %d\n", runtime.GOMAXPROCS(0)); st.Procs != runtime.GOMAXPROCS(0) || !strings.Contains(out.String(), want) {
		t.Errorf("status procs %d, printed %q; want %q", st.Procs, out.String(), want)
	}
	// A device holds its registration on a lease, and says so.
	var devOut bytes.Buffer
	dev := startNode(t, ctx, NodeConfig{Relays: []resolver.RelayAddr{b.Addr()}, Publishes: true})
	if st := StatusOf("publish", dev); !st.Registered || !st.Leased {
		t.Fatalf("device: registered %v, leased %v; want both", st.Registered, st.Leased)
	} else if err := WriteStatus(&devOut, []Status{st}); err != nil || !strings.Contains(devOut.String(), "relay "+b.Addr().String()+" (lease)") {
		t.Fatalf("printed %q (%v), want the relay and its lease", devOut.String(), err)
	}

	// A node registered nowhere says so, and what it was given.
	tn, err := transport.NewNode(newKey(t), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tn.Close()
	lost := &Node{Transport: tn, Resolver: resolver.NewClient(tn, resolver.Config{Relays: []resolver.RelayAddr{dead}})}
	if st := StatusOf("socksd", lost); st.Registered || st.Relay != dead.String() {
		t.Fatalf("unregistered node: relay %q (registered %v), want %s, false", st.Relay, st.Registered, dead)
	}
}

// A peer reached after a redirect is relayed via its own home node, and
// status says so, not this node's relay.
func TestStatusPeerViaItsHomeNode(t *testing.T) {
	ctx := context.Background()
	mr := miniredis.RunT(t)
	shared := func() *Relay {
		key := newKey(t)
		rc := redis.NewClient(&redis.Options{Addr: mr.Addr()})
		// The address the relay will listen on, for other nodes' clients.
		addr := deadRelay(t).HostPort
		p := &registry.RedisPresence{Client: rc, Node: key.ID(), Advertise: addr, Log: zerolog.Nop()}
		r := startRelayAt(t, ctx, addr, RelayConfig{Key: key, Presence: p})
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { p.Run(rctx, 100*time.Millisecond); close(done) }()
		t.Cleanup(func() { cancel(); <-done; rc.Close() })
		return r
	}
	a, b := shared(), shared()
	dev := startNode(t, ctx, NodeConfig{Relays: []resolver.RelayAddr{a.Addr()}, Publishes: true})
	agent := &peer.Agent{Node: dev.Transport, Log: zerolog.Nop(), Ports: []peer.Port{{Remote: 22, Target: echo(t)}}}
	actx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { agent.Serve(actx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	// PathRelay: on loopback a direct path would win at once.
	cli := startNode(t, ctx, NodeConfig{Relays: []resolver.RelayAddr{b.Addr()}, Path: transport.PathRelay})
	var s transport.HalfConn
	deadline := time.Now().Add(10 * time.Second)
	for {
		dctx, dcancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		s, err = cli.Dialer.DialDevice(dctx, dev.Transport.Key().ID(), 22)
		dcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dial the device homed on A from B: %v", err) // Redis refreshes every 100 ms
		}
		time.Sleep(50 * time.Millisecond)
	}
	defer s.Close()
	st := StatusOf("socksd", cli)
	if st.Relay != b.Addr().String() {
		t.Fatalf("client's relay %q, want B %s", st.Relay, b.Addr())
	}
	if len(st.Peers) != 1 || st.Peers[0].Path != "relayed" || st.Peers[0].Via != a.Addr().String() {
		t.Fatalf("peers %+v: want the device relayed via its home node A, %s", st.Peers, a.Addr())
	}
	if p := st.Peers[0]; p.PacketsSent == 0 || p.PacketsLost > p.PacketsSent {
		t.Fatalf("peer sent %d packets, lost %d: want some sent, no more lost", p.PacketsSent, p.PacketsLost)
	}
}

// The control socket answers with the document, only in its home.
func TestStatusSocket(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startRelay(t, ctx, RelayConfig{})
	n := startNode(t, ctx, NodeConfig{Relays: []resolver.RelayAddr{r.Addr()}})
	home := t.TempDir()
	if _, err := ReadStatus(home); err == nil {
		t.Fatal("status read with nothing running")
	}
	stop := serveControl(ctx, home, "publish", n, zerolog.Nop())
	docs, err := ReadStatus(home)
	stop()
	if err != nil || len(docs) != 1 || docs[0].Role != "publish" || docs[0].ID != n.Transport.Key().ID().String() {
		t.Fatalf("ReadStatus = %+v, %v", docs, err)
	}
	if _, err := ReadStatus(home); err == nil {
		t.Fatal("status read after the socket was stopped")
	}
}

// echo is a TCP echo server.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); buf := make([]byte, 1024); n, _ := c.Read(buf); c.Write(buf[:n]) }()
		}
	}()
	return ln.Addr().String()
}

// Each peer's line says how long ago a packet last arrived on its path,
// under a LAST RX column, how its path carries packets, and how many of
// the packets sent to it were lost.
func TestWriteStatusLastRx(t *testing.T) {
	doc := Status{Role: "socksd", ID: "me", Relay: "127.0.0.1:4242", Registered: true, PathMode: "auto",
		Peers: []PeerStatus{
			{ID: "a", Path: "direct", Via: "192.0.2.1:5000", LastRxms: 300, Packets: "whole", PacketsSent: 100},
			{ID: "b", Path: "relayed", Via: "127.0.0.1:4242", LastRxms: -1, Packets: "fragments", PacketsSent: 4000, PacketsLost: 12},
			{ID: "c", Path: "relayed", Via: "127.0.0.1:4242", LastRxms: 125_000},
		}}
	var out bytes.Buffer
	if err := WriteStatus(&out, []Status{doc}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) < 5 || !strings.Contains(lines[1], "LAST RX") || !strings.Contains(lines[1], "PACKETS") {
		t.Fatalf("no LAST RX or PACKETS column:\n%s", out.String())
	}
	for _, c := range []struct {
		head string
		want []string
	}{
		{"LAST RX", []string{"0.3 s ago", "never", "2 min ago"}},
		{"PACKETS", []string{"whole", "fragments", "-"}},
		{"LOST", []string{"0", "12 (0.3%)", "0"}},
	} {
		col := strings.Index(lines[1], c.head)
		for i, want := range c.want {
			if l := lines[2+i]; len(l) < col || !strings.HasPrefix(l[col:], want) {
				t.Errorf("peer line %q: want %q under %s (column %d)", l, want, c.head, col)
			}
		}
	}
}

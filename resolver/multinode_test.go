package resolver

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/quic-go/quic-go"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver/registry"
	"github.com/tunnel-dev/tunnel/transport"
)

// startRedisNode runs a registry sharing presence in mr.
func startRedisNode(t *testing.T, mr *miniredis.Miniredis) (RelayAddr, *registry.RedisPresence, func()) {
	t.Helper()
	key, _ := identity.Generate()
	return startRedisNodeKey(t, mr, "127.0.0.1:0", key)
}

// startRedisNodeKey is startRedisNode with a given key and address: the
// same node again after a restart.
func startRedisNodeKey(t *testing.T, mr *miniredis.Miniredis, listen string, key *identity.Key) (RelayAddr, *registry.RedisPresence, func()) {
	t.Helper()
	relay, err := transport.ListenRelay(listen)
	if err != nil {
		t.Fatal(err)
	}
	addr := relay.Socket().LocalAddr().String()
	rc := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	p := &registry.RedisPresence{Client: rc, Node: key.ID(), Advertise: addr, Log: zerolog.Nop()}
	srv := &registry.Server{Key: key, Relay: relay, Presence: p, Log: zerolog.Nop()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { srv.Serve(ctx); relay.Close(); done <- struct{}{} }()
	go func() { p.Run(ctx, 200*time.Millisecond); done <- struct{}{} }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			<-done
			rc.Close()
		}
	}
	t.Cleanup(stop)
	return RelayAddr{ID: key.ID(), HostPort: addr}, p, stop
}

func TestRedirectToHomeNode(t *testing.T) {
	mr := miniredis.RunT(t)
	a, pa, _ := startRedisNode(t, mr)
	b, _, _ := startRedisNode(t, mr)
	_, dev := startClient(t, a, true)
	cli, cnode := startClient(t, b, false)
	waitFor(t, func() bool { return pa.Len() == 1 })
	ln, err := dev.ListenPeers()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept(context.Background())
		if err != nil {
			return
		}
		s, err := c.AcceptStream(context.Background())
		if err != nil {
			return
		}
		io.Copy(s, s)
		s.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var conn *quic.Conn
	waitFor(t, func() bool {
		conn, err = cli.DialPeer(ctx, dev.Key().ID())
		return err == nil
	})
	// The device's frames go through A, its home node, and status says so.
	peers := cnode.Peers()
	if len(peers) != 1 || peers[0].Relay.Name != a.String() {
		t.Fatalf("peers %+v: want one, relayed via A (%s)", peers, a)
	}
	if home, ok := cli.Home(); !ok || home != b {
		t.Fatalf("client's home %v (%v), want B %v", home, ok, b)
	}
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("hello"))
	s.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo %q, %v", got, err)
	}
	conn.CloseWithError(0, "")
	// The extra session closes once no connection uses it, and with it
	// the route through A.
	waitFor(t, func() bool {
		cli.mu.Lock()
		defer cli.mu.Unlock()
		return len(cli.vias) == 0 && len(cli.routes) == 0
	})
}

func TestRegistryDownAnswersUnavailable(t *testing.T) {
	mr := miniredis.RunT(t)
	a, _, _ := startRedisNode(t, mr)
	_, dev := startClient(t, a, true)
	cli, _ := startClient(t, a, false)
	mr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A device held here is still served.
	if ep, err := cli.Lookup(ctx, dev.Key().ID()); err != nil || ep != dev.Endpoint() {
		t.Fatalf("held device with redis down: %v, %v", ep, err)
	}
	stranger, _ := identity.Generate()
	if _, err := cli.Lookup(ctx, stranger.ID()); !errors.Is(err, ErrRegistryUnavailable) {
		t.Fatalf("unknown device with redis down: %v, want ErrRegistryUnavailable", err)
	}
}

func TestRelaysPicksReachable(t *testing.T) {
	mr := miniredis.RunT(t)
	a, pa, stopA := startRedisNode(t, mr)
	b, pb, _ := startRedisNode(t, mr)
	key, _ := identity.Generate()
	nd, err := transport.NewNode(key, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(nd, Config{Relays: []RelayAddr{a, b}, Publishes: true, Log: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; nd.Close() }()
	waitFor(t, func() bool { return pa.Len()+pb.Len() == 1 })
	if pa.Len() == 1 {
		stopA()
		waitFor(t, func() bool { return pb.Len() == 1 })
	}
}

// Two connections to one device reached after a redirect: the route
// through the device's home node holds for as long as either is open.
func TestRedirectRouteOutlivesAnotherConnection(t *testing.T) {
	mr := miniredis.RunT(t)
	a, pa, _ := startRedisNode(t, mr)
	b, _, _ := startRedisNode(t, mr)
	_, dev := startClient(t, a, true)
	cli, cnode := startClient(t, b, false)
	cnode.SetMode(transport.PathRelay) // on loopback a direct path would take over
	waitFor(t, func() bool { return pa.Len() == 1 })
	ln, err := dev.ListenPeers()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lctx, lcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { lcancel(); ln.Close(); wg.Wait() }()
	wg.Go(func() {
		for {
			c, err := ln.Accept(lctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				for {
					s, err := c.AcceptStream(lctx)
					if err != nil {
						return
					}
					io.Copy(s, s)
					s.Close()
				}
			})
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func() *quic.Conn {
		var conn *quic.Conn
		waitFor(t, func() bool {
			conn, err = cli.DialPeer(ctx, dev.Key().ID())
			return err == nil
		})
		return conn
	}
	first, second := dial(), dial()
	second.CloseWithError(0, "")
	waitFor(t, func() bool { return len(cnode.Peers()) == 1 })
	s, err := first.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("still routed"))
	s.Close()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "still routed" {
		t.Fatalf("echo on the first connection after the second closed: %q, %v", got, err)
	}
	if peers := cnode.Peers(); peers[0].Relay.Name != a.String() {
		t.Fatalf("first connection relayed via %v, want A %s", peers[0].Relay, a)
	}
	first.CloseWithError(0, "")
	waitFor(t, func() bool {
		cli.mu.Lock()
		defer cli.mu.Unlock()
		return len(cli.vias) == 0 && len(cli.routes) == 0
	})
}

// The device's home node restarts under an open connection that reached
// the device after a redirect: the client registers there again, as a
// node registers again with its own relay, and the connection carries on.
// Before, the session to the home node was never opened again, the
// device's frames fell back to the client's own node, which does not hold
// the device, and the connection stalled until its idle timeout.
func TestRedirectSessionReopensAfterHomeNodeRestart(t *testing.T) {
	mr := miniredis.RunT(t)
	keyA, _ := identity.Generate()
	a, pa, stopA := startRedisNodeKey(t, mr, "127.0.0.1:0", keyA)
	b, _, _ := startRedisNode(t, mr)
	_, dev := startClient(t, a, true)
	cli, cnode := startClient(t, b, false)
	cnode.SetMode(transport.PathRelay) // on loopback a direct path would take over
	waitFor(t, func() bool { return pa.Len() == 1 })
	ln, err := dev.ListenPeers()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lctx, lcancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { lcancel(); ln.Close(); wg.Wait() }()
	wg.Go(func() {
		for {
			c, err := ln.Accept(lctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				for {
					s, err := c.AcceptStream(lctx)
					if err != nil {
						return
					}
					io.Copy(s, s)
					s.Close()
				}
			})
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var conn *quic.Conn
	waitFor(t, func() bool {
		conn, err = cli.DialPeer(ctx, dev.Key().ID())
		return err == nil
	})
	defer conn.CloseWithError(0, "")
	echo := func(ctx context.Context, msg string) error {
		s, err := conn.OpenStreamSync(ctx)
		if err != nil {
			return err
		}
		stop := context.AfterFunc(ctx, func() { s.CancelRead(1); s.CancelWrite(1) })
		defer stop()
		s.Write([]byte(msg))
		s.Close()
		got, err := io.ReadAll(s)
		if err != nil {
			return err
		}
		if string(got) != msg {
			return errors.New("echo " + string(got))
		}
		return nil
	}
	if err := echo(ctx, "before"); err != nil {
		t.Fatal(err)
	}

	stopA()
	restarted := time.Now()
	_, pa2, _ := startRedisNodeKey(t, mr, a.HostPort, keyA)
	waitFor(t, func() bool { return pa2.Len() == 1 })
	t.Logf("device registered again %v after its home node restarted", time.Since(restarted).Round(time.Millisecond))
	// The client's session there notices within a ping and a reset, and
	// registers again; the connection's lost packets are sent again.
	within := 2*transport.RelayPing + pingTimeout
	ectx, ecancel := context.WithDeadline(context.Background(), restarted.Add(within))
	defer ecancel()
	if err := echo(ectx, "after"); err != nil {
		t.Fatalf("echo on the open connection %v after the device's home node restarted: %v (want within %v)",
			time.Since(restarted).Round(time.Millisecond), err, within)
	}
	t.Logf("open connection carried an echo again %v after the restart", time.Since(restarted).Round(time.Millisecond))
	if peers := cnode.Peers(); len(peers) != 1 || peers[0].Relay.Name != a.String() {
		t.Fatalf("peers %+v: want one, relayed via A (%s)", peers, a)
	}
}

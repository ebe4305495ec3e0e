package registry

import (
	"bytes"
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver/internal/wire"
	"github.com/tunnel-dev/tunnel/transport"
)

// lines counts the log lines about limits.
type lines struct {
	mu sync.Mutex
	n  int
}

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	if bytes.Contains(p, []byte(`"limit"`)) {
		l.n++
	}
	l.mu.Unlock()
	return len(p), nil
}

func (l *lines) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// limitedServer runs a Server with limits, logging to a line counter.
func limitedServer(t *testing.T, l Limits) (*Server, *identity.Key, *transport.Relay, *lines) {
	t.Helper()
	key, _ := identity.Generate()
	relay, err := transport.ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := &lines{}
	srv := &Server{Key: key, Relay: relay, Presence: NewMemoryPresence(), Log: zerolog.New(log), Limits: l}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); relay.Close(); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return srv, key, relay, log
}

// One connection holding requests half sent costs the relay at most
// MaxStreams goroutines (it was 4,096).
func TestRelayStreamsPerConnection(t *testing.T) {
	_, key, relay, _ := limitedServer(t, Limits{})
	n := dialServer(t, key, relay)
	runtime.GC()
	g0 := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	opened := 0
	for range 1000 {
		s, err := n.conn.OpenStreamSync(ctx)
		if err != nil {
			break // the relay's stream limit: no more may open
		}
		s.Write([]byte{wire.ReqLookup}) // a request that never ends
		opened++
	}
	time.Sleep(200 * time.Millisecond)
	held := runtime.NumGoroutine() - g0
	t.Logf("%d requests opened, relay goroutines +%d", opened, held)
	if max := DefaultLimits().MaxStreams + 10; opened > DefaultLimits().MaxStreams || held > max {
		t.Fatalf("%d requests opened, %d goroutines held; want at most %d and %d", opened, held, DefaultLimits().MaxStreams, max)
	}
}

// Connections from one source are capped; refusals are logged at most
// once per source per interval.
func TestRelayConnsPerSource(t *testing.T) {
	srv, key, relay, log := limitedServer(t, Limits{MaxConnsPerSource: 3})
	k, _ := identity.Generate()
	nd, err := transport.NewNode(k, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer nd.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		c, err := nd.DialRelay(ctx, relay.Socket().LocalAddr(), key.ID())
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.CloseWithError(0, "")
	}
	l0 := log.count()
	for range 5 {
		dctx, dcancel := context.WithTimeout(ctx, time.Second)
		if c, err := nd.DialRelay(dctx, relay.Socket().LocalAddr(), key.ID()); err == nil {
			c.CloseWithError(0, "")
			t.Fatal("a fourth connection from the source was accepted")
		}
		dcancel()
	}
	if srv.Refused.Conns.Load() < 5 {
		t.Fatalf("refused %d connections, want 5", srv.Refused.Conns.Load())
	}
	if d := log.count() - l0; d > reportBurst {
		t.Fatalf("5 refusals logged %d lines, want at most %d", d, reportBurst)
	}
}

func TestRelayLookupRateAndRegistrations(t *testing.T) {
	srv, key, relay, _ := limitedServer(t, Limits{LookupRate: 5, MaxRegistrations: 2})
	a, b, c := dialServer(t, key, relay), dialServer(t, key, relay), dialServer(t, key, relay)
	for _, n := range []*rawNode{a, b} {
		if status, _ := n.ask(t, wire.ReqRegister, wire.Register{Endpoint: n.node.Endpoint(), Nonce: n.node.EndpointNonce(), Publishes: true}.Body()); status != wire.StatusOK {
			t.Fatalf("register: %s", wire.StatusText(status))
		}
	}
	if status, _ := c.ask(t, wire.ReqRegister, wire.Register{Endpoint: c.node.Endpoint(), Nonce: c.node.EndpointNonce(), Publishes: true}.Body()); status != wire.StatusBusy {
		t.Fatalf("a third registration: %s, want busy", wire.StatusText(status))
	}
	// a registering again replaces its own registration: not a new one.
	if status, _ := a.ask(t, wire.ReqRegister, wire.Register{Endpoint: a.node.Endpoint(), Nonce: a.node.EndpointNonce(), Publishes: true}.Body()); status != wire.StatusOK {
		t.Fatalf("re-registration at the cap: %s", wire.StatusText(status))
	}
	ok, busy := 0, 0
	for range 30 {
		switch status, _ := c.ask(t, wire.ReqLookup, wire.LookupBody(a.node.Key().ID())); status {
		case wire.StatusOK:
			ok++
		case wire.StatusBusy:
			busy++
		}
	}
	if ok < 10 || ok > 13 || busy == 0 {
		t.Fatalf("30 lookups at 5/s (bursts of 11): %d answered, %d busy", ok, busy)
	}
	// Another key has its own budget.
	if status, _ := b.ask(t, wire.ReqLookup, wire.LookupBody(a.node.Key().ID())); status != wire.StatusOK {
		t.Fatalf("another key's lookup: %s", wire.StatusText(status))
	}
	if srv.Refused.Registrations.Load() != 1 || srv.Refused.Lookups.Load() != uint64(busy) {
		t.Fatalf("refusals counted: %d registrations, %d lookups", srv.Refused.Registrations.Load(), srv.Refused.Lookups.Load())
	}
}

// Past the handshake rate, new sources prove their address first, and
// still get in.
func TestRelayHandshakeRate(t *testing.T) {
	srv, key, relay, _ := limitedServer(t, Limits{HandshakeRate: 1})
	for i := range 5 {
		n := dialServer(t, key, relay)
		if status, _ := n.ask(t, wire.ReqRegister, wire.Register{Endpoint: n.node.Endpoint(), Nonce: n.node.EndpointNonce(), Publishes: false}.Body()); status != wire.StatusOK {
			t.Fatalf("node %d: %s", i, wire.StatusText(status))
		}
	}
	if srv.Refused.Validated.Load() == 0 {
		t.Fatal("5 handshakes at once at a rate of 1/s: none asked to validate its address")
	}
}

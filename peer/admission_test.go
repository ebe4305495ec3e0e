package peer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/test/tcptest"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// lineCounter counts log lines and keeps the last few.
type lineCounter struct {
	mu    sync.Mutex
	n     int
	debug int // of n, at debug level
	lines []string
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n += bytes.Count(p, []byte{'\n'})
	c.debug += bytes.Count(p, []byte(`"level":"debug"`))
	if len(c.lines) < 50 && !bytes.Contains(p, []byte(`"level":"debug"`)) {
		c.lines = append(c.lines, string(p))
	}
	return len(p), nil
}

func (c *lineCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// aboveDebug counts the lines above debug level.
func (c *lineCounter) aboveDebug() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n - c.debug
}

// agentNet is a relay, a device running an Agent, and a way to dial it
// with any key, all on loopback.
type agentNet struct {
	relay  *transport.Relay
	device *transport.Node
	agent  *Agent
	log    *lineCounter
}

func startAgentNet(t *testing.T, agent *Agent) *agentNet {
	t.Helper()
	r, err := transport.ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	n := &agentNet{relay: r, agent: agent, log: &lineCounter{}}
	n.device = n.node(t, nil)
	agent.Node = n.device
	agent.Log = zerolog.New(n.log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { agent.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

// node starts a node attached to the relay, with key k (a new one if nil).
func (n *agentNet) node(t *testing.T, k *identity.Key) *transport.Node {
	t.Helper()
	if k == nil {
		k, _ = identity.Generate()
	}
	nd, err := transport.NewNode(k, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close() })
	nd.SetMode(transport.PathRelay)
	nd.SetRoutes(transport.RelayRoute{Addr: n.relay.Socket().LocalAddr()}, nil)
	t.Cleanup(n.relay.Attach(nd.Endpoint(), nd.LocalAddr()))
	return nd
}

func (n *agentNet) dial(t *testing.T, from *transport.Node) *quic.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := from.DialPeer(ctx, n.device.Key().ID(), n.device.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseWithError(0, "") })
	return c
}

// open opens one stream to port and returns how long the device took to
// answer, and its error.
func open(t *testing.T, c *quic.Conn, port uint16) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	s, _, err := stream.Open(ctx, c, stream.Request{Port: port})
	if err == nil {
		s.Write([]byte("x"))
		s.CloseWrite()
		io.ReadAll(s)
		s.Close()
	}
	return time.Since(start), err
}

// A stranger with a key allowed nothing, flooding a -private port with
// streams, costs the device a constant: a few goroutines, a few log lines,
// and no delay for an allowed client.
func TestStrangerCostsConstant(t *testing.T) {
	friendKey, _ := identity.Generate()
	agent := &Agent{Ports: []Port{{Remote: 22, Target: tcptest.Echo(t), Access: Private, Allowed: []identity.ID{friendKey.ID()}}}}
	n := startAgentNet(t, agent)
	friend := n.dial(t, n.node(t, friendKey))
	if _, err := open(t, friend, 22); err != nil {
		t.Fatalf("the allowed client: %v", err)
	}
	var before time.Duration
	for range 20 {
		d, _ := open(t, friend, 22)
		before += d
	}
	before /= 20

	stranger := n.dial(t, n.node(t, nil))
	runtime.GC()
	g0 := runtime.NumGoroutine()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	// Streams that send one byte of a header and wait: each would hold a
	// goroutine for the header timeout.
	const streams = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for range streams {
		s, err := stranger.OpenStreamSync(ctx)
		if err != nil {
			t.Fatalf("stranger's stream: %v", err)
		}
		s.Write([]byte{stream.StreamVersion})
	}
	time.Sleep(500 * time.Millisecond)
	held := runtime.NumGoroutine() - g0
	runtime.GC()
	runtime.ReadMemStats(&m1)
	heap := int64(m1.HeapInuse) - int64(m0.HeapInuse)
	// Full headers for the private port, as fast as it can: each is
	// denied.
	logs0 := n.log.count()
	floodStart := time.Now()
	var denied atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := open(t, stranger, 22); err != nil {
				denied.Add(1)
			}
		}
	})
	var during time.Duration
	for range 20 {
		d, err := open(t, friend, 22)
		if err != nil {
			t.Fatalf("the allowed client during the flood: %v", err)
		}
		during += d
	}
	during /= 20
	time.Sleep(time.Second)
	close(stop)
	wg.Wait()
	secs := time.Since(floodStart).Seconds()
	lines := n.log.count() - logs0
	t.Logf("stranger: %d half-open streams held %d goroutines and %+d KiB of heap (both ends, in this process); "+
		"%d denied streams in %.1f s logged %d lines (%.1f/s); refused %d streams, %d connections; "+
		"allowed client's stream %v before, %v during",
		streams, held, heap>>10, denied.Load(), secs, lines, float64(lines)/secs, agent.Refused.Streams.Load(),
		agent.Refused.Unauthorized.Load(), before.Round(time.Microsecond), during.Round(time.Microsecond))
	if lim := DefaultLimits().UnauthorizedStreams + 20; held > lim {
		t.Errorf("the stranger's half-open streams hold %d goroutines, want at most %d", held, lim)
	}
	// The friend's 20+21 streams log one line each; the stranger's at most a
	// burst per reportEvery.
	if max := 41 + 2*reportBurst + 2; lines > max {
		t.Errorf("%d log lines, want at most %d:\n%s", lines, max, strings.Join(n.log.lines, ""))
	}
	if during > 10*before+50*time.Millisecond {
		t.Errorf("the allowed client took %v per stream during the flood, %v before", during, before)
	}
}

// Connections of keys no port allowed are capped per key and in all; an
// allowed key's are not.
func TestUnauthorizedConnectionsCapped(t *testing.T) {
	friendKey, _ := identity.Generate()
	agent := &Agent{Ports: []Port{{Remote: 22, Target: tcptest.Echo(t), Access: Private, Allowed: []identity.ID{friendKey.ID()}}},
		Limits: Limits{UnauthorizedPerKey: 2, MaxUnauthorized: 3}}
	n := startAgentNet(t, agent)
	strangerKey, _ := identity.Generate()
	// Each connection from its own node (endpoint), one key.
	var conns []*quic.Conn
	for range 3 {
		conns = append(conns, n.dial(t, n.node(t, strangerKey)))
	}
	// The agent takes connections in whatever order its goroutines run:
	// any two of the three are served (and denied the port), one refused.
	served, refused := 0, 0
	for _, c := range conns {
		_, err := open(t, c, 22)
		switch {
		case err == nil:
			t.Error("a stranger's stream to the private port was opened")
		case errors.Is(err, stream.ErrDenied):
			served++
		default:
			// Refused: the agent closed the connection. Its stream can
			// fail before quic-go cancels the connection's context.
			select {
			case <-c.Context().Done():
				refused++
			case <-time.After(5 * time.Second):
				t.Errorf("a stream failed (%v), and its connection stayed open", err)
			}
		}
	}
	if served != 2 || refused != 1 {
		t.Errorf("three connections of one stranger key, cap 2: %d served, %d refused", served, refused)
	}
	if agent.Refused.Unauthorized.Load() == 0 {
		t.Error("no connection refused over the per-key cap")
	}
	// An allowed key is not capped.
	for range 4 {
		if _, err := open(t, n.dial(t, n.node(t, friendKey)), 22); err != nil {
			t.Fatalf("allowed client: %v", err)
		}
	}
}

// A connection whose key a port allowed gives its unauthorized slot back
// at once, for the next stranger.
func TestAuthorizedReleasesSlot(t *testing.T) {
	friendKey, _ := identity.Generate()
	agent := &Agent{Ports: []Port{{Remote: 22, Target: tcptest.Echo(t), Access: Private, Allowed: []identity.ID{friendKey.ID()}}},
		Limits: Limits{MaxUnauthorized: 1}}
	n := startAgentNet(t, agent)
	friend := n.dial(t, n.node(t, friendKey))
	if _, err := open(t, friend, 22); err != nil {
		t.Fatalf("friend: %v", err)
	}
	stranger := n.dial(t, n.node(t, nil))
	if _, err := open(t, stranger, 22); err == nil || stranger.Context().Err() != nil {
		t.Fatalf("stranger: connection closed %v, err %v; want served and denied (the friend's slot given back)", stranger.Context().Err() != nil, err)
	}
}

package dialer_test

import (
	"context"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/test/tcptest"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// staleDevice is a device that speaks the stream protocol (both halves
// are the project's own, transport/stream) on a real node registered at a
// real rendezvous node, and can be told to go deaf on the connections it
// holds — no stream on them gets an answer any more, pings included, as
// with a connection the device dropped — or to be slow to connect (its
// Status comes late) while answering pings at once.
type staleDevice struct {
	id        identity.ID
	connSlow  atomic.Int64 // a connect's Status waits this long
	mu        sync.Mutex
	conns     []*quic.Conn
	deaf      map[*quic.Conn]bool
	pings     atomic.Int32
	connected atomic.Int32
}

func startStaleDevice(t *testing.T, relay resolver.RelayAddr) *staleDevice {
	t.Helper()
	key, _ := identity.Generate()
	node, err := transport.NewNode(key, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	res := resolver.NewClient(node, resolver.Config{Relays: []resolver.RelayAddr{relay}, Publishes: true, Log: zerolog.Nop()})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	ln, err := node.ListenPeers()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); ln.Close(); node.Close(); wg.Wait() })
	wg.Go(func() { res.Run(ctx) })
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	defer rcancel()
	if err := res.WaitRegistered(rctx); err != nil {
		t.Fatal(err)
	}
	d := &staleDevice{id: key.ID(), deaf: make(map[*quic.Conn]bool)}
	wg.Go(func() {
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			d.mu.Lock()
			d.conns = append(d.conns, c)
			d.mu.Unlock()
			wg.Go(func() { d.serve(ctx, c, &wg) })
		}
	})
	return d
}

func (d *staleDevice) serve(ctx context.Context, c *quic.Conn, wg *sync.WaitGroup) {
	for {
		str, err := c.AcceptStream(ctx)
		if err != nil {
			return
		}
		d.mu.Lock()
		deaf := d.deaf[c]
		d.mu.Unlock()
		if deaf {
			continue // never read, never answered
		}
		wg.Go(func() {
			in, err := stream.Accept(str, 0)
			if err != nil {
				return
			}
			if in.Header.Kind == stream.KindPing {
				d.pings.Add(1)
				in.Reply(nil)
				return
			}
			select {
			case <-time.After(time.Duration(d.connSlow.Load())):
			case <-ctx.Done():
				in.Refuse(stream.StatusTimeout, "closing")
				return
			}
			s, err := in.Accept()
			if err != nil {
				return
			}
			d.connected.Add(1)
			s.Write([]byte("hi"))
			s.CloseWrite()
			s.Close()
		})
	}
}

// goDeaf makes every connection the device holds now deaf.
func (d *staleDevice) goDeaf() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		d.deaf[c] = true
	}
}

func (d *staleDevice) accepted() []*quic.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]*quic.Conn(nil), d.conns...)
}

// dialOnce opens a stream to id's port 22 and reads its greeting; it
// fails the test with t.Errorf (it may run on another goroutine).
func dialOnce(t *testing.T, w *world, id identity.ID) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	s, err := w.dialer.DialDevice(ctx, id, 22)
	took := time.Since(start)
	if err != nil {
		t.Errorf("dial after %s: %v", took, err)
		return took
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hi" {
		t.Errorf("stream read %q, %v", buf, err)
	}
	s.Close()
	return took
}

// TestStaleConnectionRedialed: a device that stopped answering on its
// connection (as one that dropped it while the client was frozen) costs
// the next stream about a second, not an idle timeout: the dialer pings,
// gets no answer, and opens the stream on a fresh connection.
func TestStaleConnectionRedialed(t *testing.T) {
	w := startWorld(t, []peer.Port{{Remote: 22, Target: tcptest.ClosedPort(t)}}, nil)
	dev := startStaleDevice(t, w.relay.Addr())
	dialOnce(t, w, dev.id)
	dev.goDeaf()
	took := dialOnce(t, w, dev.id)
	t.Logf("stream on a fresh connection after %s", took.Round(time.Millisecond))
	if took > 3*time.Second {
		t.Errorf("the stream took %s, want within 3s", took)
	}
	if took < time.Second {
		t.Errorf("the stream took %s: the connection was judged before its one-second floor", took)
	}
	conns := dev.accepted()
	if len(conns) != 2 {
		t.Fatalf("the device accepted %d connections, want 2 (the stale one, the fresh one)", len(conns))
	}
	// The stale connection held no stream: the dialer closed it.
	select {
	case <-conns[0].Context().Done():
	case <-time.After(5 * time.Second):
		t.Error("the stale connection was not closed by the client")
	}
}

// TestSlowDeviceNotRedialed: a device whose service is slow to accept
// (its Status comes after the stale deadline) but which answers on the
// connection keeps it: one ping, no second connection, the stream works.
func TestSlowDeviceNotRedialed(t *testing.T) {
	w := startWorld(t, []peer.Port{{Remote: 22, Target: tcptest.ClosedPort(t)}}, nil)
	dev := startStaleDevice(t, w.relay.Addr())
	dialOnce(t, w, dev.id)
	dev.connSlow.Store(int64(2500 * time.Millisecond))
	took := dialOnce(t, w, dev.id)
	if took < 2500*time.Millisecond {
		t.Fatalf("the slow stream took only %s", took)
	}
	if n := len(dev.accepted()); n != 1 {
		t.Fatalf("the device accepted %d connections, want 1: a live connection was replaced", n)
	}
	if n := dev.pings.Load(); n != 1 {
		t.Fatalf("the device answered %d pings, want 1 (the check)", n)
	}
	if n := dev.connected.Load(); n != 2 {
		t.Fatalf("%d streams connected, want 2", n)
	}
}

// TestTimeJumpChecksConnections: after a time jump every connection is
// checked at once; one whose device does not answer is closed, so that
// the next stream dials fresh without waiting; a live one is kept.
func TestTimeJumpChecksConnections(t *testing.T) {
	w := startWorld(t, []peer.Port{{Remote: 22, Target: tcptest.ClosedPort(t)}}, nil)
	deaf := startStaleDevice(t, w.relay.Addr())
	live := startStaleDevice(t, w.relay.Addr())
	dialOnce(t, w, deaf.id)
	dialOnce(t, w, live.id)
	deaf.goDeaf()
	// A stream already waiting on the dead connection when the jump is
	// noticed moves to a fresh one as soon as the check fails, before its
	// own one-second deadline.
	waiting := make(chan time.Duration, 1)
	go func() { waiting <- dialOnce(t, w, deaf.id) }()
	time.Sleep(50 * time.Millisecond)
	w.dialer.TimeJumped(70 * time.Second)
	// (dialOnce fails the test itself if the dial fails; then nothing
	// comes on waiting.)
	select {
	case took := <-waiting:
		if took > time.Second {
			t.Errorf("the stream waiting during the jump took %s, want it moved when the check failed (~0.5s)", took)
		}
		t.Logf("the stream waiting during the jump took %s", took.Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		t.Fatal("the stream waiting during the jump never finished")
	}
	stale := deaf.accepted()[0]
	select {
	case <-stale.Context().Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the connection of the deaf device was not closed within 3s of the time jump")
	}
	if took := dialOnce(t, w, deaf.id); took > 300*time.Millisecond {
		t.Errorf("the first stream after the check took %s, want a fresh dial at once", took)
	}
	dialOnce(t, w, live.id)
	if n := len(live.accepted()); n != 1 {
		t.Errorf("the live device accepted %d connections, want 1", n)
	}
	if live.accepted()[0].Context().Err() != nil {
		t.Error("the live device's connection was closed")
	}
	if n := live.pings.Load(); n != 1 {
		t.Errorf("the live device answered %d pings, want 1", n)
	}
}

// TestStaleConnectionKeepsStreams: a connection retired for not answering
// is not closed under a stream that is still open on it (the path may
// only be lossy); it is closed once that stream ends.
func TestStaleConnectionKeepsStreams(t *testing.T) {
	w := startWorld(t, []peer.Port{{Remote: 22, Target: tcptest.ClosedPort(t)}}, nil)
	dev := startStaleDevice(t, w.relay.Addr())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	held, err := w.dialer.DialDevice(ctx, dev.id, 22)
	if err != nil {
		t.Fatal(err)
	}
	dev.goDeaf()
	dialOnce(t, w, dev.id)
	conns := dev.accepted()
	if len(conns) != 2 {
		t.Fatalf("the device accepted %d connections, want 2", len(conns))
	}
	time.Sleep(200 * time.Millisecond)
	if conns[0].Context().Err() != nil {
		t.Fatal("the retired connection was closed under an open stream")
	}
	held.Close()
	select {
	case <-conns[0].Context().Done():
	case <-time.After(5 * time.Second):
		t.Error("the retired connection was not closed once its last stream ended")
	}
}

package peer

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/test/tcptest"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// openLive opens a stream to port and checks it echoes; the caller closes
// it.
func openLive(t *testing.T, c *quic.Conn, port uint16) transport.HalfConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, _, err := stream.Open(ctx, c, stream.Request{Port: port})
	if err != nil {
		t.Fatalf("open port %d: %v", port, err)
	}
	t.Cleanup(func() { s.Abort() })
	echoes(t, s, "hello")
	return s
}

// echoes reports whether word comes back through s.
func echoes(t *testing.T, s transport.HalfConn, word string) bool {
	t.Helper()
	if _, err := s.Write([]byte(word)); err != nil {
		return false
	}
	buf := make([]byte, len(word))
	done := make(chan error, 1)
	go func() { _, err := io.ReadFull(s, buf); done <- err }()
	select {
	case err := <-done:
		return err == nil && string(buf) == word
	case <-time.After(10 * time.Second):
		t.Fatalf("no echo of %q within 10 s", word)
		return false
	}
}

// ended waits until s reads an error (the agent reset it).
func ended(t *testing.T, s transport.HalfConn) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { _, err := io.ReadAll(s); done <- err }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("stream still open 10 s after the swap")
		return nil
	}
}

// A new port table ends exactly the streams it no longer allows: a
// removed port's, a client dropped from a private list's on that port
// only; the others keep passing bytes, and an added port works at once.
func TestSetPortsRevokesOnlyWhatItNoLongerAllows(t *testing.T) {
	aKey, _ := identity.Generate()
	bKey, _ := identity.Generate()
	target := tcptest.Echo(t)
	both := []identity.ID{aKey.ID(), bKey.ID()}
	agent := &Agent{Ports: []Port{
		{Remote: 22, Target: target, Access: Private, Allowed: both},
		{Remote: 80, Target: target, Access: Private, Allowed: both},
		{Remote: 90, Target: target, Access: Public},
	}}
	n := startAgentNet(t, agent)
	a := n.dial(t, n.node(t, aKey))
	b := n.dial(t, n.node(t, bKey))
	a22, b22, b80, a90 := openLive(t, a, 22), openLive(t, b, 22), openLive(t, b, 80), openLive(t, a, 90)
	if _, err := open(t, a, 8080); err == nil {
		t.Fatal("port 8080 answered before it was published")
	}

	revoked := agent.SetPorts([]Port{
		{Remote: 22, Target: target, Access: Private, Allowed: []identity.ID{aKey.ID()}}, // b dropped
		{Remote: 80, Target: target, Access: Private, Allowed: both},
		{Remote: 8080, Target: target, Access: Public}, // added; 90 removed
	}, identity.ID{})
	if revoked != 2 {
		t.Errorf("SetPorts revoked %d streams, want 2 (b's on 22, a's on 90)", revoked)
	}
	for _, s := range []struct {
		name string
		s    transport.HalfConn
	}{{"b on 22 (unlisted)", b22}, {"a on 90 (unpublished)", a90}} {
		var se *quic.StreamError
		if err := ended(t, s.s); !errors.As(err, &se) {
			t.Errorf("%s: read ended with %v, want a stream reset", s.name, err)
		}
	}
	if !echoes(t, a22, "still a") || !echoes(t, b80, "still b") {
		t.Error("a stream the new table still allows stopped echoing")
	}
	if _, err := open(t, a, 8080); err != nil {
		t.Errorf("added port 8080: %v", err)
	}
	if _, err := open(t, b, 22); !errors.Is(err, stream.ErrDenied) {
		t.Errorf("b on 22 after the swap: %v, want denied", err)
	}
	if _, err := open(t, a, 90); !errors.Is(err, stream.ErrPortNotPublished) {
		t.Errorf("port 90 after the swap: %v, want not published", err)
	}
}

// Swaps racing with streams being opened never leave a stream the table
// in force does not allow (run with -race).
func TestSetPortsRacesStreams(t *testing.T) {
	aKey, _ := identity.Generate()
	target := tcptest.Echo(t)
	allow := []Port{{Remote: 22, Target: target, Access: Private, Allowed: []identity.ID{aKey.ID()}}}
	deny := []Port{{Remote: 22, Target: target, Access: Private, Allowed: []identity.ID{{1}}}}
	agent := &Agent{Ports: allow}
	n := startAgentNet(t, agent)
	a := n.dial(t, n.node(t, aKey))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			agent.SetPorts([][]Port{allow, deny}[i%2], identity.ID{})
			time.Sleep(time.Millisecond)
		}
	})
	var streams []transport.HalfConn
	for range 40 {
		octx, ocancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, _, err := stream.Open(octx, a, stream.Request{Port: 22})
		ocancel()
		if err == nil {
			streams = append(streams, s)
			t.Cleanup(func() { s.Abort() })
		}
	}
	cancel()
	wg.Wait()
	agent.SetPorts(deny, identity.ID{})
	for i, s := range streams {
		if err := ended(t, s); err == nil {
			t.Errorf("stream %d: still served after the final table denied it (read ended cleanly)", i)
		}
	}
	agent.live.mu.Lock()
	got := len(agent.live.streams)
	agent.live.mu.Unlock()
	if got != 0 {
		t.Errorf("%d streams still tracked after the final table denied them all", got)
	}
}

package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// recHalf is a HalfConn that records how it was ended. Reads return what
// is in data, then block until ended or Abort.
type recHalf struct {
	mu                       sync.Mutex
	data                     string
	eof                      bool // after data: EOF rather than blocking
	aborted, wClosed, closed bool
	unblock                  chan struct{}
	writeGate                chan struct{} // if set, Writes wait for it (or Abort)
}

func newRecHalf(data string, eof bool) *recHalf {
	return &recHalf{data: data, eof: eof, unblock: make(chan struct{})}
}

func (h *recHalf) Read(p []byte) (int, error) {
	h.mu.Lock()
	if h.data != "" {
		n := copy(p, h.data)
		h.data = h.data[n:]
		h.mu.Unlock()
		return n, nil
	}
	eof := h.eof
	h.mu.Unlock()
	if eof {
		return 0, io.EOF
	}
	<-h.unblock
	return 0, errors.New("stream reset")
}

func (h *recHalf) Write(p []byte) (int, error) {
	if h.writeGate != nil {
		select {
		case <-h.writeGate:
		case <-h.unblock:
			return 0, errors.New("stream reset")
		}
	}
	return len(p), nil
}
func (h *recHalf) CloseWrite() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.wClosed = true
	return nil
}

func (h *recHalf) Abort() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.aborted {
		h.aborted = true
		close(h.unblock)
	}
}

func (h *recHalf) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	return nil
}

func (h *recHalf) state() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Sprintf("aborted=%v closeWrite=%v closed=%v", h.aborted, h.wClosed, h.closed)
}

func TestStreamConnClose(t *testing.T) {
	t.Run("clean: half-close, drain to EOF, release", func(t *testing.T) {
		h := newRecHalf("tail the client did not read", true)
		c := newStreamConn(h, DeviceAddr{}, nil)
		c.Write([]byte("request"))
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if got := h.state(); got != "aborted=false closeWrite=true closed=true" {
			t.Fatal(got)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v", err)
		}
	})
	t.Run("read in flight: abort unblocks it", func(t *testing.T) {
		h := newRecHalf("", false)
		closed := make(chan struct{})
		c := newStreamConn(h, DeviceAddr{}, func() { close(closed) })
		readErr := make(chan error, 1)
		go func() { _, err := c.Read(make([]byte, 1)); readErr <- err }()
		waitFor(t, "the read to start", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.busy == 1 })
		c.Close()
		if err := <-readErr; err == nil {
			t.Fatal("the blocked Read returned no error")
		}
		if got := h.state(); got != "aborted=true closeWrite=false closed=true" {
			t.Fatal(got)
		}
		<-closed
	})
	t.Run("device never ends: drain gives up and aborts", func(t *testing.T) {
		h := newRecHalf("", false)
		c := newStreamConn(h, DeviceAddr{}, nil)
		start := time.Now()
		c.Close()
		if d := time.Since(start); d < drainTimeout || d > drainTimeout+time.Second {
			t.Fatalf("Close took %v, want about %v", d, drainTimeout)
		}
		if got := h.state(); got != "aborted=true closeWrite=true closed=true" {
			t.Fatal(got)
		}
	})
	// net/http's writer can be slow to come back from writing a request
	// the device has answered and ended: that is no reason to reset it.
	writeAfterEOF := func(t *testing.T, release time.Duration) (*recHalf, time.Duration) {
		h := newRecHalf("", true)
		h.writeGate = make(chan struct{})
		c := newStreamConn(h, DeviceAddr{}, nil)
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("Read: %v, want EOF", err)
		}
		go c.Write([]byte("request"))
		waitFor(t, "the write to start", func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.busy == 1 })
		if release > 0 {
			time.AfterFunc(release, func() { close(h.writeGate) })
		}
		start := time.Now()
		c.Close()
		return h, time.Since(start)
	}
	t.Run("write in flight after the device's EOF: waited for, clean end", func(t *testing.T) {
		h, d := writeAfterEOF(t, 50*time.Millisecond)
		if got := h.state(); got != "aborted=false closeWrite=true closed=true" {
			t.Fatalf("%s after %v", got, d)
		}
	})
	t.Run("write stuck after the device's EOF: abort after the bound", func(t *testing.T) {
		h, d := writeAfterEOF(t, 0)
		if got := h.state(); got != "aborted=true closeWrite=false closed=true" || d < drainTimeout {
			t.Fatalf("%s after %v, want an abort after %v", got, d, drainTimeout)
		}
	})
	t.Run("deadlines", func(t *testing.T) {
		c := newStreamConn(newRecHalf("", true), DeviceAddr{}, nil)
		if err := c.SetDeadline(time.Now()); !errors.Is(err, errors.ErrUnsupported) {
			t.Fatalf("SetDeadline on a stream without deadlines: %v", err)
		}
		c.Close()
	})
}

// TestHTTPShutdown: ending Serve's context ends streaming responses and
// upgraded connections, and Serve returns once they have.
func TestHTTPShutdown(t *testing.T) {
	back := startBackend(t)
	device := newID(t)
	d := &fakeDialer{id: device, backend: back.Listener.Addr().String(), ssh: sshLike(t)}
	h := &HTTP{Domain: testDomain, Dialer: d, Log: zerolog.Nop()}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, ln, nil) }()
	host := device.String() + "." + testDomain

	ws, err := net.DialTimeout("tcp", ln.Addr().String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.SetDeadline(time.Now().Add(ioTimeout))
	fmt.Fprintf(ws, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\n\r\n", host)
	wbr := bufio.NewReader(ws)
	if res, err := http.ReadResponse(wbr, nil); err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	wbr.ReadString('\n')

	st, err := net.DialTimeout("tcp", ln.Addr().String(), ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	st.SetDeadline(time.Now().Add(ioTimeout))
	fmt.Fprintf(st, "GET /stream HTTP/1.1\r\nHost: %s\r\n\r\n", host)
	sbr := bufio.NewReader(st)
	res, err := http.ReadResponse(sbr, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("stream: %v %v", res, err)
	}
	if line, _ := bufio.NewReader(res.Body).ReadString('\n'); line != "first\n" {
		t.Fatalf("stream: %q", line)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not return with an upgraded connection and a stream open")
	}
	if rest, err := io.ReadAll(wbr); err == nil && strings.Contains(string(rest), "bye") {
		t.Fatalf("the upgraded connection ended cleanly (%q), want it cut", rest)
	}
	if d.openStreams() != 0 {
		t.Fatalf("%d streams to the device still open after Serve returned", d.openStreams())
	}
}

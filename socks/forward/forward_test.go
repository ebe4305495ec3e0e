package forward

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/test/tcptest"
	"github.com/tunnel-dev/tunnel/transport"
)

// dialTCP is a DialFunc that reaches addr over loopback TCP, counting its
// calls and checking it is asked for the spec's target.
type dialTCP struct {
	t       *testing.T
	addr    string
	host    string
	port    uint16
	calls   atomic.Int64
	offline atomic.Bool
}

var errOffline = fmt.Errorf("test device: %w", resolver.ErrOffline)

func (d *dialTCP) dial(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
	d.calls.Add(1)
	if host != d.host || port != d.port {
		d.t.Errorf("dialed %s:%d, want %s:%d", host, port, d.host, d.port)
	}
	if d.offline.Load() {
		return nil, errOffline
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	return transport.Conn(c), nil
}

// logBuf is a zerolog destination safe for concurrent use.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

type fixture struct {
	f    *Forwarder
	d    *dialTCP
	log  *logBuf
	stop func() error // cancels Serve and returns what it returned
}

func start(t *testing.T, spec string, mod func(*Config)) *fixture {
	t.Helper()
	s, err := ParseSpec(spec)
	if err != nil {
		t.Fatal(err)
	}
	d := &dialTCP{t: t, addr: tcptest.Echo(t), host: s.Host, port: s.Port}
	lb := &logBuf{}
	cfg := Config{Dial: d.dial, Log: zerolog.New(lb)}
	if mod != nil {
		mod(&cfg)
	}
	f, err := Listen(t.Context(), s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx) }()
	var once sync.Once
	var serveErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serveErr = <-done:
			case <-time.After(10 * time.Second):
				serveErr = errors.New("Serve did not return within 10s of cancel")
			}
		})
		return serveErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return &fixture{f: f, d: d, log: lb, stop: stop}
}

func (fx *fixture) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fx.f.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// roundTrip sends data, half-closes, and checks the echo comes back whole
// followed by EOF.
func roundTrip(c *net.TCPConn, data []byte) error {
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("writing: %w", werr)
	}
	if err != nil {
		return fmt.Errorf("reading: %w", err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		return fmt.Errorf("echo of %d bytes came back as %d different bytes", len(data), len(got))
	}
	return nil
}

func TestForwardSplices(t *testing.T) {
	fx := start(t, "0:garage:22", nil)
	if !strings.HasPrefix(fx.f.String(), "127.0.0.1:") || strings.HasPrefix(fx.f.String(), "127.0.0.1:0 ") ||
		!strings.HasSuffix(fx.f.String(), " → garage.tunnel:22") {
		t.Errorf("String() = %q, want the real port and the target", fx.f.String())
	}
	data := make([]byte, 8<<20+17)
	_, _ = rand.Read(data)
	if err := roundTrip(fx.dial(t), data); err != nil {
		t.Fatal(err)
	}
	// Many at once, each with its own bytes.
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			b := make([]byte, 1000+i*997)
			_, _ = rand.Read(b)
			if err := roundTrip(fx.dial(t), b); err != nil {
				t.Errorf("connection %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if n := fx.d.calls.Load(); n != 33 {
		t.Errorf("%d dials for 33 connections", n)
	}
}

// A device that is offline: each connection ends at once with a clean end
// of data, one line is logged for many, and once the device is back the
// same listener serves again.
func TestForwardOffline(t *testing.T) {
	fx := start(t, "0:garage:22", nil)
	fx.d.offline.Store(true)
	for i := range 20 {
		c := fx.dial(t)
		_, _ = c.Write([]byte("SSH-2.0-test\r\n")) // unread bytes must not turn the close into a reset
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		begin := time.Now()
		n, err := c.Read(make([]byte, 1))
		if n != 0 || err != io.EOF {
			t.Fatalf("connection %d to an offline device: read %d, %v; want a clean EOF", i, n, err)
		}
		if d := time.Since(begin); d > 2*time.Second {
			t.Fatalf("connection %d: EOF took %s", i, d)
		}
	}
	if n := fx.log.count("bind connection refused"); n != 1 {
		t.Errorf("%d log lines for 20 refused connections, want 1:\n%s", n, fx.log.b.String())
	}
	if n := fx.log.count("unknown or offline device"); n != 1 {
		t.Errorf("the refusal does not say the device is offline:\n%s", fx.log.b.String())
	}
	fx.d.offline.Store(false)
	if err := roundTrip(fx.dial(t), []byte("back")); err != nil {
		t.Fatalf("after the device came back: %v", err)
	}
}

// Over the cap, a connection is closed at once without a dial; under it
// again, connections are served.
func TestForwardCap(t *testing.T) {
	fx := start(t, "0:garage:22", func(c *Config) { c.MaxConns = 3 })
	var held []*net.TCPConn
	for range 3 {
		c := fx.dial(t)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err) // echoed: it holds a slot
		}
		held = append(held, c)
	}
	for range 10 {
		c := fx.dial(t)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
			t.Fatalf("over the cap: read %d, %v; want the connection closed", n, err)
		}
	}
	if n := fx.d.calls.Load(); n != 3 {
		t.Errorf("%d dials, want 3: connections over the cap must not dial", n)
	}
	if n := fx.log.count("connections already open"); n != 1 {
		t.Errorf("%d log lines for 10 connections over the cap, want 1", n)
	}
	if err := roundTrip(held[0], nil); err != nil { // gives its slot back
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for fx.f.active.Load() > 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := roundTrip(fx.dial(t), []byte("again")); err != nil {
		t.Fatalf("once under the cap again: %v", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Ending the context aborts open connections and Serve returns after them.
func TestForwardShutdown(t *testing.T) {
	fx := start(t, "0:garage:22", nil)
	c := fx.dial(t)
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if err := fx.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("open connection after shutdown: read %v, want it ended", err)
	}
	if _, err := net.DialTimeout("tcp", fx.f.Addr().String(), time.Second); err == nil {
		t.Fatal("the port still accepts after Serve returned")
	}
}

// A shutdown while a dial is under way ends the dial and the connection.
func TestForwardShutdownWhileDialing(t *testing.T) {
	entered := make(chan struct{})
	fx := start(t, "0:garage:22", func(c *Config) {
		c.Dial = func(ctx context.Context, _ string, _ uint16) (transport.HalfConn, error) {
			close(entered)
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	c := fx.dial(t)
	<-entered
	if err := fx.stop(); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read %v, want the connection ended", err)
	}
}

func TestListenErrors(t *testing.T) {
	d := func(context.Context, string, uint16) (transport.HalfConn, error) { return nil, errOffline }
	s, _ := ParseSpec("0.0.0.0:0:garage:22")
	if _, err := Listen(t.Context(), s, Config{Dial: d}); !errors.Is(err, ErrRemote) {
		t.Errorf("Listen on 0.0.0.0 without AllowRemote: %v, want ErrRemote", err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	s, _ = ParseSpec(busy.Addr().String() + ":garage:22")
	_, err = Listen(t.Context(), s, Config{Dial: d})
	want := "bind " + busy.Addr().String() + ": address already in use"
	var le *ListenError
	if err == nil || err.Error() != want || !errors.As(err, &le) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen on a port in use: %v, want a ListenError %q", err, want)
	}
	if _, err := Listen(t.Context(), s, Config{}); err == nil {
		t.Error("Listen without Dial succeeded")
	}
	// Close releases a port Serve never ran on.
	s, _ = ParseSpec("0:garage:22")
	f, err := Listen(t.Context(), s, Config{Dial: d})
	if err != nil {
		t.Fatal(err)
	}
	addr := f.Addr().String()
	f.Close()
	if ln, err := net.Listen("tcp", addr); err != nil {
		t.Errorf("port of a closed Forwarder: %v", err)
	} else {
		ln.Close()
	}
}

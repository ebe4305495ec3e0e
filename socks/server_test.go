package socks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

func TestMain(m *testing.M) {
	if args := os.Getenv(clientHelperEnv); args != "" {
		// This binary, run by a test as another user: a client, not tests.
		os.Exit(clientHelper(args))
	}
	goleak.VerifyTestMain(m)
}

// ioTimeout bounds every blocking step of a test, so that a bug shows as a
// failure rather than a hung test binary.
const ioTimeout = 5 * time.Second

// serve runs s on a loopback listener until the test ends and returns its
// address. The cleanup fails the test if Serve does not return promptly or
// returns an error.
func serve(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(ioTimeout):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

// upstream is a TCP server standing in for the service behind the tunnel.
type upstream struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	stop  func()
}

// startUpstream serves each connection with handle until stopped or the
// test ends.
func startUpstream(t *testing.T, handle func(*net.TCPConn)) *upstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ln: ln}
	u.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.conns = append(u.conns, c)
			u.mu.Unlock()
			u.wg.Go(func() {
				defer c.Close()
				handle(c.(*net.TCPConn))
			})
		}
	})
	u.stop = sync.OnceFunc(func() {
		ln.Close()
		u.mu.Lock()
		for _, c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	t.Cleanup(u.stop)
	return u
}

// dial is a DialFunc that connects to the upstream whatever was asked.
func (u *upstream) dial(ctx context.Context, _ string, _ uint16) (transport.HalfConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.ln.Addr().String())
	if err != nil {
		return nil, err
	}
	return transport.Conn(c), nil
}

// echoTrailer is what the echo upstream sends after the client's EOF: it
// proves the upstream saw the half-close and could still send.
const echoTrailer = "<after EOF>"

func echo(c *net.TCPConn) {
	if _, err := io.Copy(c, c); err != nil {
		return
	}
	if _, err := c.Write([]byte(echoTrailer)); err != nil {
		return
	}
	c.CloseWrite()
}

// logSink collects the JSON lines the server logs.
type logSink chan map[string]any

func (l logSink) Write(p []byte) (int, error) {
	var m map[string]any
	if err := json.Unmarshal(p, &m); err != nil {
		return 0, err
	}
	select {
	case l <- m:
	default: // a test that logs more than it reads loses lines, not progress
	}
	return len(p), nil
}

func newLogSink() (logSink, zerolog.Logger) {
	l := make(logSink, 64)
	return l, zerolog.New(l).Level(zerolog.DebugLevel)
}

// next returns the next line with the given message.
func (l logSink) next(t *testing.T, msg string) map[string]any {
	t.Helper()
	timeout := time.After(ioTimeout)
	for {
		select {
		case m := <-l:
			if m["message"] == msg {
				return m
			}
		case <-timeout:
			t.Fatalf("no %q log line", msg)
			return nil
		}
	}
}

func dialServer(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// connect sends greeting, request and extra in one write — a server that
// read past any message would lose bytes — and returns the reply code.
func connect(t *testing.T, addr string, req Request, extra []byte) (*net.TCPConn, byte) {
	t.Helper()
	c := dialServer(t, addr)
	msg, err := AppendRequest([]byte{5, 1, methodNoAuth}, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(append(msg, extra...)); err != nil {
		t.Fatal(err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil {
		t.Fatalf("reading method selection: %v", err)
	}
	if sel != [2]byte{5, methodNoAuth} {
		t.Fatalf("method selection % x, want 05 00", sel)
	}
	code, err := ReadReply(c)
	if err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	return c, code
}

// expectClosed fails unless the server ends c (EOF or reset) with nothing
// more to read, and returns how long that took.
func expectClosed(t *testing.T, c net.Conn) time.Duration {
	t.Helper()
	start := time.Now()
	n, err := c.Read(make([]byte, 64))
	if n != 0 || (err != io.EOF && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("read after server should have closed: n=%d err=%v", n, err)
	}
	return time.Since(start)
}

func TestConnectHalfClose(t *testing.T) {
	up := startUpstream(t, echo)
	logs, log := newLogSink()
	addr := serve(t, &Server{Dial: up.dial, Log: log})

	payload := make([]byte, 1<<20)
	for i := range payload {
		payload[i] = byte(rand.Uint32())
	}
	// The first bytes travel in the same segment as the request.
	first, rest := payload[:100], payload[100:]
	c, code := connect(t, addr, Request{Cmd: CmdConnect, Host: "example.com", Port: 8080}, first)
	if code != ReplySucceeded {
		t.Fatalf("reply %#02x, want success", code)
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		if _, err := c.Write(rest); err != nil {
			t.Errorf("writing payload: %v", err)
			return
		}
		if err := c.CloseWrite(); err != nil {
			t.Errorf("CloseWrite: %v", err)
		}
	})
	got, err := io.ReadAll(c)
	wg.Wait()
	if err != nil {
		t.Fatalf("reading echo: %v", err)
	}
	want := append(bytes.Clone(payload), echoTrailer...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want %d (payload then %q)", len(got), len(want), echoTrailer)
	}

	m := logs.next(t, "socks connect")
	wantFields := map[string]any{
		"level": "info", "host": "example.com", "port": 8080.0, "reply": "0x00",
		"up": float64(len(payload)), "down": float64(len(want)),
		"client": c.LocalAddr().String(),
	}
	for k, v := range wantFields {
		if m[k] != v {
			t.Errorf("log field %s = %v, want %v (line %v)", k, m[k], v, m)
		}
	}
	for _, k := range []string{"dur"} {
		if _, ok := m[k]; !ok {
			t.Errorf("log line lacks %s: %v", k, m)
		}
	}
	for _, k := range []string{"error", "peer"} {
		if _, ok := m[k]; ok {
			t.Errorf("log line has %s: %v", k, m)
		}
	}
}

// Neither a slow dial nor an idle session may be cut by the handshake
// deadline.
func TestHandshakeDeadlineCleared(t *testing.T) {
	up := startUpstream(t, echo)
	const hs = 100 * time.Millisecond
	slowDial := func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		time.Sleep(3 * hs)
		return up.dial(ctx, host, port)
	}
	addr := serve(t, &Server{Dial: slowDial, HandshakeTimeout: hs})

	c, code := connect(t, addr, Request{Cmd: CmdConnect, Host: "127.0.0.1", Port: 1}, nil)
	if code != ReplySucceeded {
		t.Fatalf("reply %#02x, want success", code)
	}
	time.Sleep(3 * hs)
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping"+echoTrailer {
		t.Fatalf("after idling got %q, %v", got, err)
	}
}

func TestDialErrors(t *testing.T) {
	tests := []struct {
		err  error
		want byte
	}{
		{stream.ErrDenied, ReplyNotAllowed},
		{fmt.Errorf("dial device x: %w", stream.ErrDenied), ReplyNotAllowed},
		{dialer.ErrNotTunnel, ReplyNotAllowed},
		{resolver.ErrMalformedName, ReplyHostUnreachable},
		{resolver.ErrOffline, ReplyHostUnreachable},
		{resolver.ErrRegistryUnavailable, ReplyHostUnreachable},
		{transport.ErrNoDirectPath, ReplyHostUnreachable},
		{&net.DNSError{Err: "no such host", Name: "example.invalid", IsNotFound: true}, ReplyHostUnreachable},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, ReplyHostUnreachable},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, ReplyNetworkUnreachable},
		{stream.ErrPortNotPublished, ReplyConnectionRefused},
		{stream.ErrRefused, ReplyConnectionRefused},
		{&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, ReplyConnectionRefused},
		{stream.ErrTimeout, ReplyTTLExpired},
		{context.DeadlineExceeded, ReplyTTLExpired},
		{os.ErrDeadlineExceeded, ReplyTTLExpired},
		{&net.OpError{Op: "dial", Net: "tcp", Err: timeoutErr{}}, ReplyTTLExpired},
		{transport.ErrPeerMismatch, ReplyGeneralFailure},
		{errors.New("something else"), ReplyGeneralFailure},
		{context.Canceled, ReplyGeneralFailure},
	}
	var mu sync.Mutex
	var dialErr error
	dial := func(context.Context, string, uint16) (transport.HalfConn, error) {
		mu.Lock()
		defer mu.Unlock()
		return nil, dialErr
	}
	logs, log := newLogSink()
	addr := serve(t, &Server{Dial: dial, Log: log})
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err), func(t *testing.T) {
			if got := ReplyCode(tt.err); got != tt.want {
				t.Errorf("ReplyCode = %#02x, want %#02x", got, tt.want)
			}
			mu.Lock()
			dialErr = tt.err
			mu.Unlock()
			c, code := connect(t, addr, Request{Cmd: CmdConnect, Host: tunnelHost, Port: 22}, nil)
			if code != tt.want {
				t.Errorf("reply %#02x, want %#02x", code, tt.want)
			}
			expectClosed(t, c)

			m := logs.next(t, "socks connect")
			wantLevel := "info"
			if tt.want == ReplyGeneralFailure {
				wantLevel = "warn"
			}
			wantFields := map[string]any{
				"level": wantLevel, "reply": fmt.Sprintf("0x%02x", tt.want),
				"host": tunnelHost, "peer": tunnelID.Short(), "port": 22.0,
			}
			for k, v := range wantFields {
				if m[k] != v {
					t.Errorf("log field %s = %v, want %v (line %v)", k, m[k], v, m)
				}
			}
			if e, _ := m["error"].(string); e == "" {
				t.Errorf("log line lacks the error: %v", m)
			}
		})
	}
	if got := ReplyCode(nil); got != ReplySucceeded {
		t.Errorf("ReplyCode(nil) = %#02x", got)
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// The dial gets DialTimeout, and running out of it is reported as a
// timeout.
func TestDialTimeout(t *testing.T) {
	const dt = 150 * time.Millisecond
	dial := func(ctx context.Context, _ string, _ uint16) (transport.HalfConn, error) {
		dl, ok := ctx.Deadline()
		if !ok || time.Until(dl) > dt {
			t.Errorf("dial ctx deadline %v (set %v), want within %v", time.Until(dl), ok, dt)
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	addr := serve(t, &Server{Dial: dial, DialTimeout: dt, HandshakeTimeout: time.Minute})
	start := time.Now()
	c, code := connect(t, addr, Request{Cmd: CmdConnect, Host: "example.com", Port: 80}, nil)
	if code != ReplyTTLExpired {
		t.Errorf("reply %#02x, want %#02x", code, ReplyTTLExpired)
	}
	if d := time.Since(start); d < dt || d > ioTimeout/2 {
		t.Errorf("reply after %v, want about %v", d, dt)
	}
	expectClosed(t, c)
}

func TestUnsupportedCommands(t *testing.T) {
	dial := func(context.Context, string, uint16) (transport.HalfConn, error) {
		t.Errorf("Dial called for a command other than CONNECT")
		return nil, errors.New("unexpected dial")
	}
	logs, log := newLogSink()
	addr := serve(t, &Server{Dial: dial, Log: log})
	for _, cmd := range []byte{CmdBind, CmdUDPAssociate, 0x00, 0x09} {
		t.Run(fmt.Sprintf("cmd %#02x", cmd), func(t *testing.T) {
			c, code := connect(t, addr, Request{Cmd: cmd, Host: "127.0.0.1", Port: 80}, nil)
			if code != ReplyCommandNotSupported {
				t.Errorf("reply %#02x, want %#02x", code, ReplyCommandNotSupported)
			}
			expectClosed(t, c)
			m := logs.next(t, "socks request")
			if m["cmd"] != fmt.Sprintf("0x%02x", cmd) || m["reply"] != "0x07" {
				t.Errorf("log line %v", m)
			}
		})
	}
}

func TestUnknownAddressType(t *testing.T) {
	addr := serve(t, &Server{Dial: func(context.Context, string, uint16) (transport.HalfConn, error) {
		t.Errorf("Dial called for an unknown address type")
		return nil, errors.New("unexpected dial")
	}})
	c := dialServer(t, addr)
	if _, err := c.Write([]byte{5, 1, 0, 5, 1, 0, 2, 127, 0, 0, 1, 0, 80}); err != nil {
		t.Fatal(err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
		t.Fatalf("method selection % x, %v", sel, err)
	}
	code, err := ReadReply(c)
	if err != nil || code != ReplyAddressNotSupported {
		t.Fatalf("reply %#02x, %v; want %#02x", code, err, ReplyAddressNotSupported)
	}
	expectClosed(t, c)
}

func TestNoAcceptableMethod(t *testing.T) {
	addr := serve(t, &Server{Dial: failDial})
	c := dialServer(t, addr)
	// Username/password and GSSAPI, but not "no authentication".
	if _, err := c.Write([]byte{5, 2, 2, 1}); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, []byte{5, 0xff}) {
		t.Fatalf("got % x, %v; want 05 ff then close", got, err)
	}
}

// (SOCKS4 is answered: socks4_test.go.)
func TestWrongVersionClosesSilently(t *testing.T) {
	addr := serve(t, &Server{Dial: failDial})
	for _, hello := range [][]byte{
		{3, 1, 0, 80, 127, 0, 0, 1, 0},              // no SOCKS version
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), // HTTP on the wrong port
		{5, 1, 0, 4, 1, 0, 1, 127, 0, 0, 1, 0, 80},  // request with version 4
	} {
		c := dialServer(t, addr)
		if _, err := c.Write(hello); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if hello[0] == 5 {
			// The greeting was fine, so its answer is expected; nothing
			// may follow it.
			if !bytes.Equal(got, []byte{5, 0}) {
				t.Errorf("% x: got % x, %v; want 05 00 then close", hello, got, err)
			}
			continue
		}
		if len(got) != 0 {
			t.Errorf("%q: got reply % x, want none", hello, got)
		}
	}
}

func failDial(context.Context, string, uint16) (transport.HalfConn, error) {
	return nil, errors.New("no dialing in this test")
}

func TestStalledClientDropped(t *testing.T) {
	const hs = 200 * time.Millisecond
	addr := serve(t, &Server{Dial: failDial, HandshakeTimeout: hs})
	stalls := map[string][]byte{
		"silent":               nil,
		"half a greeting":      {5},
		"methods missing":      {5, 2, 0},
		"greeting, no request": {5, 1, 0},
		"half a request":       {5, 1, 0, 5, 1, 0, 3, 20, 'a', 'b'},
	}
	for name, sent := range stalls {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := dialServer(t, addr)
			if _, err := c.Write(sent); err != nil {
				t.Fatal(err)
			}
			if len(sent) >= 3 && sent[1] == 1 {
				var sel [2]byte
				if _, err := io.ReadFull(c, sel[:]); err != nil {
					t.Fatal(err)
				}
			}
			// Not before the deadline either: a slow client is not a
			// stalled one.
			if d := expectClosed(t, c); d < hs/2 || d > hs+time.Second {
				t.Errorf("dropped after %v, want about %v", d, hs)
			}
		})
	}
}

func TestGarbage(t *testing.T) {
	addr := serve(t, &Server{
		Dial: func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
			return nil, errors.New("garbage happened to be a valid request")
		},
		HandshakeTimeout: 200 * time.Millisecond,
	})
	rng := rand.New(rand.NewPCG(1, 2))
	var clients sync.WaitGroup
	for i := range 200 {
		junk := make([]byte, rng.IntN(300))
		for j := range junk {
			junk[j] = byte(rng.Uint32())
		}
		// Half the time look like SOCKS5 for a while, to get past the
		// first checks.
		if i%2 == 0 && len(junk) > 3 {
			junk[0], junk[1], junk[2] = 5, 1, 0
			if len(junk) > 4 {
				junk[3] = 5
			}
		}
		clients.Go(func() {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(ioTimeout))
			c.Write(junk)
			c.(*net.TCPConn).CloseWrite()
			if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("after % x: %v", junk, err)
			}
		})
	}
	clients.Wait()

	// The server is still there.
	c, code := connect(t, addr, Request{Cmd: CmdConnect, Host: "example.com", Port: 80}, nil)
	if code != ReplyGeneralFailure {
		t.Errorf("reply %#02x after garbage, want %#02x", code, ReplyGeneralFailure)
	}
	expectClosed(t, c)
}

// Cancelling Serve's ctx ends sessions in every stage — spliced, dialing,
// mid-handshake — promptly and without leaks.
func TestShutdown(t *testing.T) {
	up := startUpstream(t, echo)
	dialing := make(chan struct{})
	dial := func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		if host == "stuck" {
			close(dialing)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return up.dial(ctx, host, port)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Dial: dial}).Serve(ctx, ln) }()

	var spliced []*net.TCPConn
	for range 3 {
		c, code := connect(t, addr, Request{Cmd: CmdConnect, Host: "127.0.0.1", Port: 1}, []byte("x"))
		if code != ReplySucceeded {
			t.Fatalf("reply %#02x", code)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatalf("echo before shutdown: %v", err)
		}
		spliced = append(spliced, c)
	}
	stalled := dialServer(t, addr)
	stalled.Write([]byte{5, 1})
	stuck := dialServer(t, addr)
	msg, _ := AppendRequest([]byte{5, 1, 0}, Request{Cmd: CmdConnect, Host: "stuck", Port: 1})
	stuck.Write(msg)
	<-dialing

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel: %v", err)
		}
	case <-time.After(ioTimeout):
		t.Fatal("Serve did not return after cancel")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Serve took %v to shut down", d)
	}
	for _, c := range spliced {
		// Aborted, not ended cleanly: the client must not mistake a
		// shutdown for the end of the data.
		if _, err := io.ReadAll(c); !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("spliced client after shutdown: %v, want a reset", err)
		}
	}
	io.ReadAll(stalled)
	io.ReadAll(stuck)
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Errorf("listener still accepts after shutdown")
	}
	up.stop()
	goleak.VerifyNone(t)
}

type scriptedListener struct {
	net.Listener
	errs    []error
	accepts int
}

func (l *scriptedListener) Accept() (net.Conn, error) {
	l.accepts++
	if len(l.errs) == 0 {
		return nil, errors.New("script ran out")
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}

func (l *scriptedListener) Close() error { return nil }

// A full file table is waited out; any other Accept error ends Serve.
func TestServeAcceptErrors(t *testing.T) {
	fatal := errors.New("listener broke")
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	ln := &scriptedListener{errs: []error{emfile, emfile, fatal}}
	err := (&Server{Dial: failDial}).Serve(context.Background(), ln)
	if !errors.Is(err, fatal) {
		t.Errorf("Serve = %v, want %v", err, fatal)
	}
	if ln.accepts != 3 {
		t.Errorf("Accept called %d times, want 3", ln.accepts)
	}

	if err := (&Server{}).Serve(context.Background(), &scriptedListener{}); err == nil {
		t.Errorf("Serve without Dial succeeded")
	}
}

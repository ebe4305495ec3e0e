package socks

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/tunnel-dev/tunnel/cmd/roles/procs"
	"github.com/tunnel-dev/tunnel/transport"
)

// door is a server with its HTTP front, behind a password file holding
// alice:right, dialing an echo upstream and counting the dials.
type door struct {
	addr  string
	auth  *Authenticator
	dials *atomic.Int64
	log   logSink
}

func startDoor(t *testing.T, limits AuthLimits, preAuth *PreAuth) door {
	t.Helper()
	a, _ := newTestAuth(t, limits)
	sink, log := newLogSink()
	a.log = log
	u := startUpstream(t, echo)
	dials := new(atomic.Int64)
	dial := func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		dials.Add(1)
		return u.dial(ctx, host, port)
	}
	front := &HTTPFront{Dial: dial, Log: log, Auth: a}
	s := &Server{Dial: dial, Log: log, Auth: a, Other: front.ServeConn, PreAuth: preAuth}
	return door{addr: serve(t, s), auth: a, dials: dials, log: sink}
}

// echoThrough checks that c carries bytes to the echo upstream and back.
func echoThrough(t *testing.T, c net.Conn, r io.Reader) {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, "hello"); err != nil {
		t.Fatal(err)
	}
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(r)
	if err != nil || string(got) != "hello"+echoTrailer {
		t.Fatalf("echo %q, %v", got, err)
	}
}

func TestSOCKSPassword(t *testing.T) {
	d := startDoor(t, AuthLimits{Burst: 3, Rate: 0.001}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()

	// Offering only "no authentication": 0xFF, and nothing dialed.
	c := dialServer(t, d.addr)
	c.Write([]byte{5, 1, methodNoAuth})
	if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, []byte{5, 0xff}) {
		t.Fatalf("no-auth only: % x, %v; want 05 ff then close", got, err)
	}
	if _, err := Dial(ctx, d.addr, "x.tunnel", 22); !errors.Is(err, ErrNoAcceptableMethod) ||
		!strings.Contains(err.Error(), "username and password") {
		t.Fatalf("Dial without a password: %v, want ErrNoAcceptableMethod with a hint", err)
	}

	// The right password: through to the upstream, logged with the user.
	conn, err := DialAuth(ctx, d.addr, &Auth{User: "alice", Password: "right"}, "x.tunnel", 22)
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, conn, conn)
	conn.Close()
	if m := d.log.next(t, "socks connect"); m["user"] != "alice" || m["reply"] != "0x00" {
		t.Fatalf("log line %v, want user alice and reply 0x00", m)
	}

	// A wrong one: status 0x01, then close.
	c = dialServer(t, d.addr)
	msg, _ := AppendUserPass([]byte{5, 1, methodUserPass}, "alice", "wrong")
	c.Write(msg)
	if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, []byte{5, 2, 1, 1}) {
		t.Fatalf("wrong password: % x, %v; want 05 02, 01 01, then close", got, err)
	}
	if _, err := DialAuth(ctx, d.addr, &Auth{User: "alice", Password: "wrong2"}, "x.tunnel", 22); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v, want ErrAuthFailed", err)
	}
	// The burst (3) is spent: refused with no check, yet the cached right
	// password still gets in from the same address.
	for i := range 5 {
		if _, err := DialAuth(ctx, d.addr, &Auth{User: "alice", Password: fmt.Sprint("guess", i)}, "x.tunnel", 22); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("guess %d: %v, want ErrAuthFailed", i, err)
		}
	}
	if n := d.auth.Checks(); n != 3 {
		t.Fatalf("%d bcrypt checks, want 3: the right password once, two wrong, then none", n)
	}
	conn, err = DialAuth(ctx, d.addr, &Auth{User: "alice", Password: "right"}, "x.tunnel", 22)
	if err != nil {
		t.Fatalf("cached password from a limited address: %v", err)
	}
	conn.Close()
	if n := d.dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2 (the right password's)", n)
	}

	// A malformed sub-negotiation closes, unanswered.
	c = dialServer(t, d.addr)
	c.Write([]byte{5, 1, methodUserPass, 5, 1, 'a', 1, 'b'})
	if got, _ := io.ReadAll(c); !bytes.Equal(got, []byte{5, 2}) {
		t.Fatalf("bad version: % x, want 05 02 then close", got)
	}
}

// httpConnect sends a CONNECT with the given Proxy-Authorization (none if
// empty) and returns the response and the connection.
func httpConnect(t *testing.T, addr, auth string) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	c := dialServer(t, addr)
	req := "CONNECT x.tunnel:22 HTTP/1.1\r\nHost: x.tunnel:22\r\n"
	if auth != "" {
		req += "Proxy-Authorization: " + auth + "\r\n"
	}
	io.WriteString(c, req+"\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	return resp, c, br
}

func basic(user, pw string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pw))
}

func TestHTTPConnectPassword(t *testing.T) {
	d := startDoor(t, AuthLimits{Burst: 3, Rate: 0.001}, nil)
	for _, auth := range []string{"", basic("alice", "wrong"), "Bearer abc", "Basic !!!", basic("bob", "right")} {
		resp, _, _ := httpConnect(t, d.addr, auth)
		if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") != `Basic realm="tunnel"` {
			t.Fatalf("Proxy-Authorization %q: %d %q; want 407 with Basic realm=\"tunnel\"", auth, resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
		}
	}
	resp, c, br := httpConnect(t, d.addr, basic("alice", "right"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("right password: %d", resp.StatusCode)
	}
	echoThrough(t, c, br)
	// The PAC file holds no secret: served without a password.
	c = dialServer(t, d.addr)
	io.WriteString(c, "GET /proxy.pac HTTP/1.1\r\nHost: "+d.addr+"\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PAC without a password: %v, %v", resp, err)
	}
	// Three checks spent (wrong, bob, right): refused with 429 now.
	resp, _, _ = httpConnect(t, d.addr, basic("alice", "guess"))
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past the burst: %d, want 429 with Retry-After", resp.StatusCode)
	}
	if n := d.dials.Load(); n != 1 {
		t.Fatalf("%d dials, want 1", n)
	}
}

// Strangers without credentials cost a bounded number of goroutines and
// no password check: each gets 0xFF or 407; those holding connections open
// hold at most PreAuth's cap of goroutines, and the rest are closed at
// once. When they leave, nothing of them is left.
func TestStrangersCostBounded(t *testing.T) {
	const perSource = 8
	sink, log := newLogSink()
	d := startDoor(t, AuthLimits{}, NewPreAuth(perSource, 16, log))
	base := runtime.NumGoroutine()

	for range 50 {
		c := dialServer(t, d.addr)
		c.Write([]byte{5, 1, methodNoAuth})
		if got, _ := io.ReadAll(c); !bytes.Equal(got, []byte{5, 0xff}) {
			t.Fatalf("stranger: % x, want 05 ff", got)
		}
		c.Close()
		resp, c2, _ := httpConnect(t, d.addr, "")
		if resp.StatusCode != http.StatusProxyAuthRequired {
			t.Fatalf("stranger over HTTP: %d", resp.StatusCode)
		}
		c2.Close()
	}
	if n := d.auth.Checks(); n != 0 {
		t.Fatalf("%d password checks for strangers offering none", n)
	}

	// 100 connections that send all but the end of 60 KiB of HTTP
	// headers, and stay.
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	header := "GET / HTTP/1.1\r\nX-Pad: " + strings.Repeat("p", 60<<10)
	var stalled []net.Conn
	for range 100 {
		c := dialServer(t, d.addr)
		io.WriteString(c, header)
		stalled = append(stalled, c)
	}
	closedAtOnce := 0
	for _, c := range stalled {
		c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
			closedAtOnce++
		}
	}
	held := runtime.NumGoroutine() - base
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("100 strangers from one address each sending 60 KiB of unfinished headers: %d closed at once, "+
		"%d goroutines held, heap %+d KiB (%d KiB per held connection)", closedAtOnce, held, heap>>10, heap>>10/perSource)
	if closedAtOnce != 100-perSource {
		t.Fatalf("%d of 100 closed at once, want %d (all past the per-source cap)", closedAtOnce, 100-perSource)
	}
	if held > perSource+2 {
		t.Fatalf("%d goroutines held for %d admitted connections", held, perSource)
	}
	if heap > perSource*256<<10 {
		t.Fatalf("heap grew %d KiB for %d held connections, want at most 256 KiB each", heap>>10, perSource)
	}
	if m := sink.next(t, "socks connection closed: too many not yet authorized"); m["suppressed"].(float64) != 0 {
		t.Fatalf("first over-cap line %v", m)
	}
	for _, c := range stalled {
		c.Close()
	}
	deadline := time.Now().Add(ioTimeout)
	for runtime.NumGoroutine() > base && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base {
		t.Fatalf("%d goroutines after the strangers left, %d before", n, base)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Without a password file, Admit decides: a refused client gets 0x02 or
// 403 and nothing is dialed; with one, Admit is not asked.
func TestAdmit(t *testing.T) {
	u := startUpstream(t, echo)
	var dials, asked atomic.Int64
	dial := func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		dials.Add(1)
		return u.dial(ctx, host, port)
	}
	refuse := func(net.Conn) error { asked.Add(1); return ErrOtherUser }
	front := &HTTPFront{Dial: dial, Log: zerolog.Nop(), Admit: refuse}
	addr := serve(t, &Server{Dial: dial, Admit: refuse, Other: front.ServeConn})
	if _, code := connect(t, addr, Request{Cmd: CmdConnect, Host: "x.tunnel", Port: 22}, nil); code != ReplyNotAllowed {
		t.Fatalf("refused client: reply %#02x, want 0x02", code)
	}
	// Even a request the server could not read through gets 0x02.
	c := dialServer(t, addr)
	c.Write([]byte{5, 1, 0, 5, 1, 0, 9})
	if code, err := ReadReply(skip(c, 2)); err != nil || code != ReplyNotAllowed {
		t.Fatalf("refused client, bad ATYP: %#02x, %v", code, err)
	}
	if resp, _, _ := httpConnect(t, addr, ""); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("refused CONNECT: %d, want 403", resp.StatusCode)
	}
	c = dialServer(t, addr)
	io.WriteString(c, "GET /proxy.pac HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("PAC for a refused user: %v, %v", resp, err)
	}
	if dials.Load() != 0 || asked.Load() != 3 {
		t.Fatalf("%d dials, Admit asked %d times; want 0, 3", dials.Load(), asked.Load())
	}

	a, _ := newTestAuth(t, AuthLimits{})
	addr = serve(t, &Server{Dial: dial, Admit: refuse, Auth: a})
	conn, err := DialAuth(context.Background(), addr, &Auth{User: "alice", Password: "right"}, "x.tunnel", 22)
	if err != nil {
		t.Fatalf("with a password file, Admit is not asked: %v", err)
	}
	conn.Close()
	if asked.Load() != 3 {
		t.Fatal("Admit asked although a password file decides")
	}
}

// skip returns r after discarding its first n bytes (the method selection).
func skip(r io.Reader, n int64) io.Reader {
	io.CopyN(io.Discard, r, n)
	return r
}

// BenchmarkStrangerGuessing is one stranger guessing passwords over SOCKS
// as fast as it can for 5 s, against socksd's default limits and a
// password hashed at the default cost (10): the attempts it makes a
// second, the bcrypt checks it forces (its burst, then one a second), and
// the CPU per attempt, client and server together since both run in this
// process (BenchmarkAuthFailedCheck is one check alone).
// Run: go test -run '^$' -bench StrangerGuessing -benchtime 1x ./socks/
func BenchmarkStrangerGuessing(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	pw, err := LoadPasswords(writePasswords(b, "alice:"+string(h)+"\n"))
	if err != nil {
		b.Fatal(err)
	}
	a := NewAuthenticator(pw, AuthLimits{}, zerolog.Nop())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &Server{Dial: failDial, Auth: a, PreAuth: NewPreAuth(DefaultPreAuthPerSource, DefaultPreAuthTotal, zerolog.Nop())}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()

	const period = 5 * time.Second
	for b.Loop() {
		checks0, cpu0, start := a.Checks(), procs.CPUTime(), time.Now()
		attempts := 0
		for time.Since(start) < period {
			dctx, dcancel := context.WithTimeout(context.Background(), ioTimeout)
			_, err := DialAuth(dctx, ln.Addr().String(), &Auth{User: "alice", Password: fmt.Sprint("guess", attempts)}, "x.tunnel", 22)
			dcancel()
			if !errors.Is(err, ErrAuthFailed) {
				b.Fatalf("guess %d: %v", attempts, err)
			}
			attempts++
		}
		elapsed, checks, cpu := time.Since(start), a.Checks()-checks0, procs.CPUTime()-cpu0
		b.ReportMetric(float64(attempts)/elapsed.Seconds(), "attempts/s")
		b.ReportMetric(float64(checks)/elapsed.Seconds(), "checks/s")
		b.ReportMetric(float64(checks), "checks")
		b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(attempts), "cpu-ms/attempt")
	}
}

// A client given a password still gets through a server that asks none:
// it offers both methods and sends the password only when asked.
func TestClientPasswordNotAsked(t *testing.T) {
	u := startUpstream(t, echo)
	addr := serve(t, &Server{Dial: u.dial})
	c, err := DialAuth(context.Background(), addr, &Auth{User: "alice", Password: "right"}, "x.tunnel", 22)
	if err != nil {
		t.Fatal(err)
	}
	echoThrough(t, c, c)
	c.Close()
}

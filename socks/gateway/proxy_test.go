package gateway

import (
	"bufio"
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/test/tcptest"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// ioTimeout bounds every blocking step of a test.
const ioTimeout = 5 * time.Second

const testDomain = "example.test"

// Ports of the fake device and what dialing them does.
const (
	portDenied       = 22
	portNotPublished = 23
	portRefused      = 24
	portTimeout      = 25   // the device reports its service timed out
	portHang         = 26   // the device never answers: the dial deadline ends it
	portSSH          = 2222 // not a web server
)

// fakeDialer stands in for dialer.Dialer: device id publishes the
// backend on ports 80 and 8080; any other ID is offline.
type fakeDialer struct {
	id      identity.ID
	backend string
	ssh     string // a TCP server that greets like sshd and hangs up

	mu    sync.Mutex
	dials []DeviceAddr
	open  int // streams not yet closed
}

// noDeadlines is a HalfConn without deadline methods, as the streams of
// dialer.Dialer are.
type noDeadlines struct {
	transport.HalfConn
	onClose func()
	once    sync.Once
}

func (n *noDeadlines) Close() error {
	err := n.HalfConn.Close()
	n.once.Do(n.onClose)
	return err
}

func (n *noDeadlines) Abort() {
	n.HalfConn.Abort()
	n.once.Do(n.onClose)
}

func (d *fakeDialer) DialDevice(ctx context.Context, id identity.ID, port uint16) (transport.HalfConn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, DeviceAddr{id, port})
	d.mu.Unlock()
	if id != d.id {
		return nil, fmt.Errorf("lookup %s: %w", id.Short(), resolver.ErrOffline)
	}
	switch port {
	case 80, 8080, portSSH:
		addr := d.backend
		if port == portSSH {
			addr = d.ssh
		}
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		d.open++
		d.mu.Unlock()
		return &noDeadlines{HalfConn: transport.Conn(c), onClose: func() {
			d.mu.Lock()
			d.open--
			d.mu.Unlock()
		}}, nil
	case portDenied:
		return nil, stream.StatusError(stream.StatusDenied, "not listed")
	case portRefused:
		return nil, stream.ErrRefused
	case portTimeout:
		return nil, stream.ErrTimeout
	case portHang:
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return nil, stream.ErrPortNotPublished
}

func (d *fakeDialer) lastDial() DeviceAddr {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.dials) == 0 {
		return DeviceAddr{}
	}
	return d.dials[len(d.dials)-1]
}

func (d *fakeDialer) numDials() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.dials)
}

func (d *fakeDialer) openStreams() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.open
}

// backend is the device's web server.
type backend struct {
	*httptest.Server
	release chan struct{} // /stream's second part waits for this
}

// wsAccept is the Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

func startBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Backend", "yes")
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"host": r.Host, "method": r.Method, "path": r.URL.RequestURI(), "body": string(body),
			"xff": r.Header.Values("X-Forwarded-For"), "xfh": r.Header.Get("X-Forwarded-Host"),
			"xfp": r.Header.Get("X-Forwarded-Proto"), "test": r.Header.Get("X-Test"),
			"forwarded": r.Header.Get("Forwarded"),
		})
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		// A known length, so that only FlushInterval -1 passes the first
		// part on early (ReverseProxy flushes chunked responses anyway).
		w.Header().Set("Content-Length", strconv.Itoa(len("first\nsecond\n")))
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "want an upgrade", http.StatusBadRequest)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Accept: %s\r\n\r\nhello from the device\n", wsAccept(r.Header.Get("Sec-WebSocket-Key")))
		brw.Flush()
		// Echo, upper-cased, until the client half-closes; then say bye.
		buf := make([]byte, 4096)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				c.Write([]byte(strings.ToUpper(string(buf[:n]))))
			}
			if err != nil {
				break
			}
		}
		io.WriteString(c, "bye\n")
	})
	b.Server = httptest.NewServer(mux)
	t.Cleanup(b.Server.Close)
	return b
}

// gw is a gateway on loopback in front of a fake device.
type gw struct {
	addr   string
	h      *HTTP
	dialer *fakeDialer
	device identity.ID
	back   *backend
}

func startGateway(t *testing.T, lim *Limiter, tlsConfig *tls.Config, tweak func(*HTTP)) *gw {
	t.Helper()
	back := startBackend(t)
	g := &gw{back: back, device: newID(t)}
	g.dialer = &fakeDialer{id: g.device, backend: back.Listener.Addr().String(), ssh: sshLike(t)}
	g.h = &HTTP{Domain: testDomain, Dialer: g.dialer, Limiter: lim, Log: zerolog.Nop()}
	if tweak != nil {
		tweak(g.h)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.h.Serve(ctx, ln, tlsConfig) }()
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
	return g
}

// client returns an HTTP client that sends every request to the gateway,
// from local address from ("" for any).
func (g *gw) client(t *testing.T, from string) *http.Client {
	t.Helper()
	nd := &net.Dialer{Timeout: ioTimeout}
	if from != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return nd.DialContext(ctx, "tcp", g.addr)
	}, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: ioTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func (g *gw) host(port uint16) string {
	if port == 80 {
		return g.device.String() + "." + testDomain
	}
	return g.device.String() + "-" + strconv.Itoa(int(port)) + "." + testDomain
}

func get(t *testing.T, c *http.Client, host, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://gateway"+path, nil)
	req.Host = host
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s%s: %v", host, path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("GET %s%s: reading body: %v", host, path, err)
	}
	return res, string(body)
}

func TestHTTPProxiesHeadersAndBody(t *testing.T) {
	g := startGateway(t, nil, nil, nil)
	c := g.client(t, "")
	host := strings.ToUpper(g.device.String()) + "-8080.EXAMPLE.TEST:8443"
	req, _ := http.NewRequest(http.MethodPost, "http://gateway/echo?q=1", strings.NewReader("request body"))
	req.Host = host
	req.Header.Set("X-Test", "passed")
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // a client's claim: dropped
	req.Header.Set("X-Forwarded-Host", "evil.test")
	req.Header.Set("Forwarded", "for=6.6.6.6")
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var got struct {
		Host, Method, Path, Body, Xfh, Xfp, Test, Forwarded string
		Xff                                                 []string
	}
	if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || res.Header.Get("X-Backend") != "yes" {
		t.Fatalf("status %d, X-Backend %q", res.StatusCode, res.Header.Get("X-Backend"))
	}
	want := struct {
		Host, Method, Path, Body, Xfh, Xfp, Test, Forwarded string
		Xff                                                 []string
	}{host, "POST", "/echo?q=1", "request body", host, "http", "passed", "", []string{"127.0.0.1"}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the device saw %+v\nwant %+v", got, want)
	}
	if d := g.dialer.lastDial(); d.ID != g.device || d.Port != 8080 {
		t.Fatalf("dialed %v, want port 8080 of the device", d)
	}
	// The bare name reaches port 80.
	if res, _ := get(t, c, g.host(80), "/echo", nil); res.StatusCode != 200 || g.dialer.lastDial().Port != 80 {
		t.Fatalf("%s: status %d, dialed %v", g.host(80), res.StatusCode, g.dialer.lastDial())
	}
	waitFor(t, "streams to the device closed", func() bool { return g.dialer.openStreams() == 0 })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHTTPStreamsBeforeBackendFinishes(t *testing.T) {
	g := startGateway(t, nil, nil, nil)
	req, _ := http.NewRequest(http.MethodGet, "http://gateway/stream", nil)
	req.Host = g.host(80)
	res, err := g.client(t, "").Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	br := bufio.NewReader(res.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v: the response was held back", line, err)
	}
	close(g.back.release)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
}

func TestHTTPWebSocketUpgrade(t *testing.T) {
	g := startGateway(t, nil, nil, nil)
	c, err := net.DialTimeout("tcp", g.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	const key = "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", g.host(80), key)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-WebSocket-Accept") != wsAccept(key) ||
		!strings.EqualFold(res.Header.Get("Upgrade"), "websocket") {
		t.Fatalf("upgrade answered %s %v", res.Status, res.Header)
	}
	if line, err := br.ReadString('\n'); err != nil || line != "hello from the device\n" {
		t.Fatalf("first bytes from the device: %q, %v", line, err)
	}
	for _, msg := range []string{"ping 1\n", "ping 2\n"} {
		io.WriteString(c, msg)
		if line, err := br.ReadString('\n'); err != nil || line != strings.ToUpper(msg) {
			t.Fatalf("echo of %q: %q, %v", msg, line, err)
		}
	}
	// A half-close reaches the device, whose last words still come back.
	c.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "bye\n" {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}
	waitFor(t, "the stream to the device closed", func() bool { return g.dialer.openStreams() == 0 })
}

func TestHTTPErrors(t *testing.T) {
	g := startGateway(t, nil, nil, func(h *HTTP) { h.DialTimeout = 300 * time.Millisecond })
	c := g.client(t, "")
	other := newID(t)
	for _, tc := range []struct {
		name, host string
		status     int
		text       string
	}{
		{"other domain", "www.example.org", 400, "Unknown host"},
		{"IP literal", "127.0.0.1", 400, "Unknown host"},
		{"bare domain", testDomain, 404, "No such device name"},
		{"malformed ID", "x." + testDomain, 404, "No such device name"},
		{"extra label", "www." + g.host(80), 404, "No such device name"},
		{"bad port", g.device.String() + "-0." + testDomain, 404, "No such device name"},
		{"offline device", other.String() + "." + testDomain, 502, "Device offline or unknown"},
		{"private port", g.host(portDenied), 403, "This port is not public"},
		{"not published", g.host(portNotPublished), 502, "Port not published"},
		{"refused", g.host(portRefused), 502, "Connection refused"},
		{"device timeout", g.host(portTimeout), 504, "Timed out"},
		{"dial deadline", g.host(portHang), 504, "Timed out"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			res, body := get(t, c, tc.host, "/", nil)
			if res.StatusCode != tc.status || !strings.Contains(body, tc.text) {
				t.Fatalf("status %d body %q; want %d with %q", res.StatusCode, body, tc.status, tc.text)
			}
			if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
				t.Fatalf("Content-Type %q for a non-browser", res.Header.Get("Content-Type"))
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("answered after %v", d)
			}
			res, body = get(t, c, tc.host, "/", map[string]string{"Accept": "text/html,*/*"})
			if res.StatusCode != tc.status || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") ||
				!strings.Contains(body, "<title>"+strconv.Itoa(tc.status)) || strings.Contains(body, "goroutine") {
				t.Fatalf("browser got %d %q: %q", res.StatusCode, res.Header.Get("Content-Type"), body)
			}
		})
	}
	n := g.dialer.numDials()
	for _, raw := range []string{
		// Never a forward proxy: neither CONNECT nor an absolute URL for
		// another host reaches anything.
		"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
		"GET http://127.0.0.1:22/ HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
		"CONNECT " + g.host(80) + ":443 HTTP/1.1\r\nHost: " + g.host(80) + ":443\r\n\r\n",
	} {
		status := rawStatus(t, g.addr, raw)
		if status != 400 && status != 405 {
			t.Errorf("%q answered %d, want 400 or 405", raw, status)
		}
	}
	if g.dialer.numDials() != n {
		t.Fatal("a proxy-style request dialed a device")
	}
	// A device service that does not speak HTTP is a 502, not a hang.
	if res, body := get(t, c, g.host(portSSH), "/", nil); res.StatusCode != 502 || !strings.Contains(body, "Bad gateway") {
		t.Fatalf("an ssh server behind the port: %d %q, want 502", res.StatusCode, body)
	}
}

// rawStatus sends raw bytes to addr and returns the status of the answer.
func rawStatus(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	io.WriteString(c, raw)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: %v", raw, err)
	}
	res.Body.Close()
	return res.StatusCode
}

func TestHTTPRateLimitPerSource(t *testing.T) {
	lim := NewLimiter(Limits{ConnRate: 0.01, ConnBurst: 2, MaxStreams: 10, MaxTotal: 100})
	g := startGateway(t, lim, nil, nil)
	a := g.client(t, "127.0.0.1")
	for i := range 2 {
		if res, _ := get(t, a, g.host(80), "/echo", nil); res.StatusCode != 200 {
			t.Fatalf("request %d: %d", i+1, res.StatusCode)
		}
	}
	// X-Forwarded-For cannot buy a new budget.
	res, body := get(t, a, g.host(80), "/echo", map[string]string{"X-Forwarded-For": "198.51.100.7"})
	if res.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("over the budget: %d %q, want 429", res.StatusCode, body)
	}
	if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q", res.Header.Get("Retry-After"))
	}
	// Another source still gets through.
	b := g.client(t, "127.0.0.2")
	if res, body := get(t, b, g.host(80), "/echo", nil); res.StatusCode != 200 {
		t.Fatalf("another source: %d %q", res.StatusCode, body)
	}
}

func TestHTTPConnectionCapPerSource(t *testing.T) {
	lim := NewLimiter(Limits{ConnRate: 1000, ConnBurst: 1000, MaxStreams: 2, MaxTotal: 100})
	g := startGateway(t, lim, nil, nil)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.DialTimeout("tcp", g.addr, ioTimeout)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The third idle connection from one source is closed at once.
	c, err := net.DialTimeout("tcp", g.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection: read %d, %v; want it closed", n, err)
	}
	// The first two still work.
	io.WriteString(conns[0], "GET /echo HTTP/1.1\r\nHost: "+g.host(80)+"\r\nConnection: close\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conns[0]), nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("a connection within the cap: %v %v", res, err)
	}
	res.Body.Close()
	// Another source is unaffected.
	if res, _ := get(t, g.client(t, "127.0.0.2"), g.host(80), "/echo", nil); res.StatusCode != 200 {
		t.Fatalf("another source: %d", res.StatusCode)
	}
}

// sshLike runs a TCP server that sends an SSH banner and closes.
func sshLike(t *testing.T) string {
	return tcptest.Serve(t, func(c net.Conn) { io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n") })
}

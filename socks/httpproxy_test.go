package socks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// origin is a real HTTP server on loopback standing in for the device's
// web server, and a DialFunc that reaches it for .tunnel hosts only, as the
// dialer does (a non-.tunnel host gets ErrNotTunnel).
type origin struct {
	srv   *http.Server
	addr  string
	mu    sync.Mutex
	dials []string // host:port the front asked for
}

func startOrigin(t *testing.T, h http.Handler) *origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &origin{srv: &http.Server{Handler: h, ReadHeaderTimeout: ioTimeout}, addr: ln.Addr().String()}
	var wg sync.WaitGroup
	wg.Go(func() { _ = o.srv.Serve(ln) })
	t.Cleanup(func() { o.srv.Close(); wg.Wait() })
	return o
}

func (o *origin) dial(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
	o.mu.Lock()
	o.dials = append(o.dials, net.JoinHostPort(host, fmt.Sprint(port)))
	o.mu.Unlock()
	if _, isTunnel, _ := resolver.ParseName(host); !isTunnel {
		return nil, fmt.Errorf("%w: %s", dialer.ErrNotTunnel, host)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", o.addr)
	if err != nil {
		return nil, err
	}
	return transport.Conn(c), nil
}

func (o *origin) dialed() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.dials...)
}

// echoRequest answers, as JSON, what the origin server received.
type echoRequest struct {
	Method     string      `json:"method"`
	RequestURI string      `json:"uri"`
	Host       string      `json:"host"`
	Header     http.Header `json:"header"`
	BodyLen    int         `json:"body_len"`
	BodySHA    string      `json:"body_sha"`
	Chunked    bool        `json:"chunked"`
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	e := echoRequest{Method: r.Method, RequestURI: r.RequestURI, Host: r.Host, Header: r.Header,
		BodyLen: int(n), BodySHA: hex.EncodeToString(h.Sum(nil)), Chunked: len(r.TransferEncoding) > 0}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(e)
}

const testDevice = "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.tunnel"

// rawExchange sends req on a fresh connection to the front and reads one
// response, and whether the front then closed the connection.
func rawExchange(t *testing.T, addr, req string, method string) (*http.Response, []byte) {
	t.Helper()
	c := dialServer(t, addr)
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("request %q: %v", req, err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("request %q: body: %v", req, err)
	}
	resp.Body.Close()
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Fatalf("request %q: after the response, %q and %v; want the connection closed", req, rest, err)
	}
	return resp, body
}

// A request in absolute form reaches the device's server in origin form,
// with its Host, and without what was meant for the proxy or for one hop.
func TestForwardHeaderHygiene(t *testing.T) {
	o := startOrigin(t, http.HandlerFunc(echoHandler))
	addr := serveFront(t, o.dial)
	req := "GET http://" + testDevice + ":8080/path/x?q=1&r=%20 HTTP/1.1\r\n" +
		"Host: " + testDevice + ":8080\r\n" +
		"User-Agent: test/1\r\n" +
		"Proxy-Authorization: Basic YWxpY2U6cmlnaHQ=\r\n" +
		"Proxy-Connection: keep-alive\r\n" +
		"Connection: keep-alive, X-Drop\r\n" +
		"Keep-Alive: 300\r\n" +
		"TE: trailers\r\n" +
		"Upgrade: websocket\r\n" +
		"X-Drop: named by Connection\r\n" +
		"X-Keep: end to end\r\n\r\n"
	resp, body := rawExchange(t, addr, req, http.MethodGet)
	if resp.StatusCode != http.StatusOK || !resp.Close {
		t.Fatalf("status %d, close %v; want 200 and Connection: close", resp.StatusCode, resp.Close)
	}
	var e echoRequest
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	if e.RequestURI != "/path/x?q=1&r=%20" || e.Host != testDevice+":8080" || e.Method != http.MethodGet {
		t.Fatalf("the server saw %s %q Host %q; want origin form /path/x?q=1&r=%%20 and Host %s:8080", e.Method, e.RequestURI, e.Host, testDevice)
	}
	for _, k := range []string{"Proxy-Authorization", "Proxy-Connection", "Keep-Alive", "Te", "Upgrade", "X-Drop"} {
		if v, ok := e.Header[k]; ok {
			t.Errorf("the server got %s: %q; want it removed", k, v)
		}
	}
	if e.Header.Get("X-Keep") != "end to end" || e.Header.Get("User-Agent") != "test/1" || e.Header.Get("Connection") != "close" {
		t.Errorf("the server's headers %v: want X-Keep and User-Agent as sent, Connection: close", e.Header)
	}
	if got := o.dialed(); len(got) != 1 || got[0] != testDevice+":8080" {
		t.Fatalf("dialed %v, want [%s:8080]", got, testDevice)
	}

	// No port in the URL is port 80.
	rawExchange(t, addr, "HEAD http://"+testDevice+"/ HTTP/1.1\r\nHost: "+testDevice+"\r\n\r\n", http.MethodHead)
	if got := o.dialed(); len(got) != 2 || got[1] != testDevice+":80" {
		t.Fatalf("dialed %v, want %s:80 second", got, testDevice)
	}
}

// What the device answers comes back without its hop-by-hop headers, a
// chunked body decoded and ended by the close the client is told of.
func TestForwardResponseHygiene(t *testing.T) {
	u := startUpstream(t, func(c *net.TCPConn) {
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"+
			"X-Hop: 1\r\nX-End: 2\r\nTransfer-Encoding: chunked\r\nProxy-Authenticate: Basic\r\n\r\n"+
			"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	})
	addr := serveFront(t, func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		return u.dial(ctx, host, port)
	})
	resp, body := rawExchange(t, addr, "GET http://"+testDevice+"/ HTTP/1.1\r\nHost: "+testDevice+"\r\n\r\n", http.MethodGet)
	if string(body) != "hello world" {
		t.Fatalf("body %q, want hello world", body)
	}
	for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Authenticate"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("the client got %s: %q; want it removed", k, v)
		}
	}
	if resp.Header.Get("X-End") != "2" || !resp.Close || len(resp.TransferEncoding) != 0 {
		t.Errorf("the client's headers %v, encoding %v: want X-End, Connection: close, no chunking", resp.Header, resp.TransferEncoding)
	}
}

// Bodies, chunked or of a length, reach the server whole, and stream: the
// server reads the first part while the client has not yet sent the rest.
func TestForwardBody(t *testing.T) {
	firstSeen := make(chan struct{})
	o := startOrigin(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			buf := make([]byte, 5)
			if _, err := io.ReadFull(r.Body, buf); err != nil || string(buf) != "first" {
				http.Error(w, "first part", http.StatusBadRequest)
				return
			}
			close(firstSeen)
		}
		echoHandler(w, r)
	}))
	addr := serveFront(t, o.dial)
	proxy, _ := url.Parse("http://" + addr)
	tr := &http.Transport{Proxy: http.ProxyURL(proxy)}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 2 * ioTimeout}

	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	sum := sha256.Sum256(big)
	for _, chunked := range []bool{false, true} {
		var body io.Reader = bytes.NewReader(big)
		if chunked {
			body = io.MultiReader(body) // hides the length: Go sends it chunked
		}
		req, _ := http.NewRequest(http.MethodPost, "http://"+testDevice+"/upload", body)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e echoRequest
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("chunked %v: %d, %v", chunked, resp.StatusCode, err)
		}
		if e.BodyLen != len(big) || e.BodySHA != hex.EncodeToString(sum[:]) || e.Chunked != chunked {
			t.Fatalf("chunked %v: the server got %d bytes (sha %s, chunked %v); want %d bytes", chunked, e.BodyLen, e.BodySHA, e.Chunked, len(big))
		}
	}

	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPut, "http://"+testDevice+"/stream", pr)
	done := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			var e echoRequest
			err = json.NewDecoder(resp.Body).Decode(&e)
			resp.Body.Close()
			if err == nil && e.BodyLen != len("second") {
				err = fmt.Errorf("the server read %d bytes after the first part, want 6", e.BodyLen)
			}
		}
		done <- err
	}()
	pw.Write([]byte("first"))
	select {
	case <-firstSeen:
	case <-time.After(ioTimeout):
		pw.CloseWithError(fmt.Errorf("test gave up"))
		<-done
		t.Fatal("the server did not get the first part of the body before the rest was sent: the front buffers bodies")
	}
	pw.Write([]byte("second"))
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// The door is CONNECT's: 407 without credentials, nothing dialed; with
// them, through. Admit's refusal is 403.
func TestForwardDoor(t *testing.T) {
	o := startOrigin(t, http.HandlerFunc(echoHandler))
	a, _ := newTestAuth(t, AuthLimits{})
	front := &HTTPFront{Dial: o.dial, Log: zerolog.Nop(), Auth: a}
	addr := serve(t, &Server{Dial: o.dial, Auth: a, Other: front.ServeConn})
	get := "GET http://" + testDevice + "/ HTTP/1.1\r\nHost: " + testDevice + "\r\n"
	resp, _ := rawExchange(t, addr, get+"\r\n", http.MethodGet)
	if resp.StatusCode != http.StatusProxyAuthRequired || resp.Header.Get("Proxy-Authenticate") != `Basic realm="tunnel"` {
		t.Fatalf("no credentials: %d %q, want 407 with Basic realm", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
	resp, _ = rawExchange(t, addr, get+"Proxy-Authorization: "+basic("alice", "wrong")+"\r\n\r\n", http.MethodGet)
	if resp.StatusCode != http.StatusProxyAuthRequired {
		t.Fatalf("wrong password: %d, want 407", resp.StatusCode)
	}
	if n := len(o.dialed()); n != 0 {
		t.Fatalf("%d dials before the door was passed", n)
	}
	resp, body := rawExchange(t, addr, get+"Proxy-Authorization: "+basic("alice", "right")+"\r\n\r\n", http.MethodGet)
	var e echoRequest
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &e) != nil || e.Header.Get("Proxy-Authorization") != "" {
		t.Fatalf("right password: %d %q; want 200 and no Proxy-Authorization passed on", resp.StatusCode, body)
	}

	refuse := func(net.Conn) error { return ErrOtherUser }
	front = &HTTPFront{Dial: o.dial, Log: zerolog.Nop(), Admit: refuse}
	addr = serve(t, &Server{Dial: o.dial, Admit: refuse, Other: front.ServeConn})
	if resp, _ := rawExchange(t, addr, get+"\r\n", http.MethodGet); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("refused by Admit: %d, want 403", resp.StatusCode)
	}
	if n := len(o.dialed()); n != 1 {
		t.Fatalf("%d dials, want 1 (the right password's)", n)
	}
}

// A host that is not .tunnel gets what CONNECT gives it: the Dial decides,
// and with no fallback that is 403. Targets the front cannot forward are
// 400 and dial nothing; a dead device is 502, a slow one 504.
func TestForwardRefusals(t *testing.T) {
	o := startOrigin(t, http.HandlerFunc(echoHandler))
	addr := serveFront(t, o.dial)
	resp, body := rawExchange(t, addr, "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", http.MethodGet)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), ".tunnel") {
		t.Fatalf("example.com: %d %q, want 403 saying only .tunnel hosts are served", resp.StatusCode, body)
	}
	if got := o.dialed(); len(got) != 1 || got[0] != "example.com:80" {
		t.Fatalf("dialed %v, want the Dial asked about example.com:80 and nothing else", got)
	}
	for _, target := range []string{"https://" + testDevice + "/", "http://" + testDevice + ":0/", "http://:80/"} {
		resp, _ := rawExchange(t, addr, "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n", http.MethodGet)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", target, resp.StatusCode)
		}
	}
	if n := len(o.dialed()); n != 1 {
		t.Fatalf("%d dials, want none for the unforwardable targets", n)
	}

	for _, c := range []struct {
		err  error
		want int
	}{
		{resolver.ErrOffline, http.StatusBadGateway},
		{context.DeadlineExceeded, http.StatusGatewayTimeout},
	} {
		addr := serveFront(t, func(context.Context, string, uint16) (transport.HalfConn, error) { return nil, c.err })
		if resp, _ := rawExchange(t, addr, "GET http://"+testDevice+"/ HTTP/1.1\r\n\r\n", http.MethodGet); resp.StatusCode != c.want {
			t.Errorf("dial error %v: %d, want %d", c.err, resp.StatusCode, c.want)
		}
	}
}

// An absolute-form request is read under the same 64 KiB header cap.
func TestForwardHeaderCap(t *testing.T) {
	o := startOrigin(t, http.HandlerFunc(echoHandler))
	addr := serveFront(t, o.dial)
	c := dialServer(t, addr)
	c.SetDeadline(time.Now().Add(ioTimeout))
	go func() {
		io.WriteString(c, "GET http://"+testDevice+"/ HTTP/1.1\r\nX-Big: ")
		big := bytes.Repeat([]byte("a"), 64<<10)
		for range 8 {
			if _, err := c.Write(big); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	if n := len(o.dialed()); n != 0 {
		t.Fatalf("%d dials for an oversized request", n)
	}
}

// A device that dies in the middle of a body makes the client see a
// broken connection, not a short body it could take for a whole one.
func TestForwardCutBody(t *testing.T) {
	u := startUpstream(t, func(c *net.TCPConn) {
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		c.SetLinger(0)
	})
	addr := serveFront(t, func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		return u.dial(ctx, host, port)
	})
	c := dialServer(t, addr)
	c.SetDeadline(time.Now().Add(ioTimeout))
	io.WriteString(c, "GET http://"+testDevice+"/ HTTP/1.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("a body cut by the device read as whole: %q", body)
	}
	t.Logf("cut body: %q, then %v", body, err)
}

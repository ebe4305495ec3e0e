package socks

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// halfClosed is the server end of a net.Pipe whose client sent n bytes and
// then closed its sending half, which net.Pipe cannot: reads past the n
// bytes get EOF, while writes still reach the client.
type halfClosed struct {
	net.Conn
	n int
}

func (c *halfClosed) Read(b []byte) (int, error) {
	if c.n == 0 {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(b[:min(len(b), c.n)])
	c.n -= n
	return n, err
}

// FuzzHTTPFront sends the HTTP front what a stranger on the SOCKS port
// might, with a Dial that refuses everything. It must answer or close
// (within a deadline, never hanging), dial only for a CONNECT to a
// host:port or an http:// URL in absolute form, answer each request as
// README says, and never put in the PAC
// file a SOCKS address that could break out of its JavaScript string.
func FuzzHTTPFront(f *testing.F) {
	for _, s := range []string{
		"GET /proxy.pac HTTP/1.1\r\nHost: 127.0.0.1:1080\r\n\r\n",
		"CONNECT yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.tunnel:22 HTTP/1.1\r\n\r\n\x16\x03\x01",
		"HEAD /wpad.dat HTTP/1.0\r\n\r\n",
		"GET /proxy.pac HTTP/1.1\r\nHost: a\";x:1\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
		"CONNECT [::1]:0 HTTP/1.1\r\n\r\n",
		"GET http://yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.tunnel/a?b HTTP/1.1\r\nProxy-Connection: keep-alive\r\n\r\n",
		"POST http://x.tunnel:8080/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		// A port with leading zeros is the number it spells: 01 dials 1.
		"GET http://000000000:01 HTTP/1.1\r\n\r\n",
		"CONNECT x.tunnel:022 HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	const listen = "127.0.0.1:1080"
	f.Fuzz(func(t *testing.T, in []byte) {
		var dials []string
		front := &HTTPFront{Log: zerolog.Nop(), Listen: listen, HandshakeTimeout: 5 * time.Second, DialTimeout: time.Second,
			Dial: func(_ context.Context, host string, port uint16) (transport.HalfConn, error) {
				dials = append(dials, net.JoinHostPort(host, strconv.Itoa(int(port))))
				return nil, dialer.ErrNotTunnel
			}}
		srv, cli := net.Pipe()
		var out []byte
		var wg sync.WaitGroup
		wg.Go(func() { _, _ = cli.Write(in) })
		wg.Go(func() { out, _ = io.ReadAll(cli) })
		done := make(chan struct{})
		go func() {
			defer close(done)
			front.ServeConn(context.Background(), &halfClosed{Conn: srv, n: len(in)}, func() {})
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Close()
			<-done
			t.Fatalf("ServeConn(%q) neither answered nor closed in 10 s", in)
		}
		cli.Close()
		wg.Wait()

		// The request as the front reads it.
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			if len(out) != 0 || len(dials) != 0 {
				t.Fatalf("unreadable request %q: dialed %v, answered %q", in, dials, out)
			}
			return
		}
		br := bufio.NewReader(bytes.NewReader(out))
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			t.Fatalf("request %q answered %q: %v", in, out, err)
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil || br.Buffered() != 0 {
			t.Fatalf("request %q answered %q: body %v, %d bytes after it", in, out, err, br.Buffered())
		}
		// An absolute-form request is forwarded: dialed when its URL is an
		// http:// one with a host and a port (80 if none), else 400.
		fwd := req.Method != http.MethodConnect && req.URL.Scheme != ""
		fport := req.URL.Port()
		if fport == "" {
			fport = "80"
		}
		fn, fperr := strconv.ParseUint(fport, 10, 16)
		fwdOK := fwd && strings.EqualFold(req.URL.Scheme, "http") && req.URL.Hostname() != "" && fperr == nil && fn != 0
		host, port, herr := net.SplitHostPort(req.Host)
		n, perr := strconv.ParseUint(port, 10, 16)
		isPAC := !fwd && (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
			(req.URL.Path == "/proxy.pac" || req.URL.Path == "/wpad.dat")
		switch {
		case fwdOK:
			if len(dials) != 1 || dials[0] != net.JoinHostPort(req.URL.Hostname(), strconv.FormatUint(fn, 10)) || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("forward %q: dialed %v, status %d", req.URL, dials, resp.StatusCode)
			}
		case req.Method == http.MethodConnect && herr == nil && perr == nil && n != 0 && host != "":
			if len(dials) != 1 || dials[0] != net.JoinHostPort(host, strconv.FormatUint(n, 10)) || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("CONNECT %q: dialed %v, status %d", req.Host, dials, resp.StatusCode)
			}
		case len(dials) != 0:
			t.Fatalf("request %q dialed %v", in, dials)
		case isPAC:
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("PAC request %q: status %d", in, resp.StatusCode)
			}
			if req.Method == http.MethodGet {
				checkPAC(t, in, body)
			}
		case resp.StatusCode != http.StatusBadRequest:
			t.Fatalf("request %q: status %d, want 400", in, resp.StatusCode)
		}
	})
}

// checkPAC checks that body is the PAC file for some SOCKS address that
// stays inside its JavaScript string.
func checkPAC(t *testing.T, in, body []byte) {
	t.Helper()
	const open = `return "SOCKS5 `
	i := bytes.Index(body, []byte(open))
	if i < 0 {
		t.Fatalf("request %q: no SOCKS5 line in PAC %q", in, body)
	}
	addr, _, ok := strings.Cut(string(body[i+len(open):]), `";`)
	if !ok || strings.ContainsAny(addr, "\"\\\r\n\u2028\u2029") || PAC(addr) != string(body) {
		t.Fatalf("request %q: PAC for SOCKS address %q:\n%s", in, addr, body)
	}
}

package socks

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// serveFront runs a SOCKS server with the HTTP front on loopback.
func serveFront(t *testing.T, dial DialFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := &HTTPFront{Dial: dial, Log: zerolog.Nop(), Listen: ln.Addr().String()}
	srv := &Server{Dial: dial, Log: zerolog.Nop(), Other: front.ServeConn}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ctx, ln) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ln.Addr().String()
}

func TestHTTPFrontPAC(t *testing.T) {
	addr := serveFront(t, func(context.Context, string, uint16) (transport.HalfConn, error) { return nil, dialer.ErrNotTunnel })
	resp, err := http.Get("http://" + addr + "/proxy.pac")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ns-proxy-autoconfig" {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), `"SOCKS5 `+addr+`"`) || !strings.Contains(string(body), ".tunnel") {
		t.Fatalf("PAC does not send .tunnel to %s:\n%s", addr, body)
	}
	resp, err = http.Get("http://" + addr + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("other path: %d", resp.StatusCode)
	}
}

// A HEAD gets the headers of the answer and no body, which a client would
// read as the start of the next response.
func TestHTTPFrontHeadNoBody(t *testing.T) {
	addr := serveFront(t, func(context.Context, string, uint16) (transport.HalfConn, error) { return nil, dialer.ErrNotTunnel })
	for _, path := range []string{"/other", "/proxy.pac"} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "HEAD "+path+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(c)
		c.Close()
		if err != nil || !strings.HasPrefix(string(out), "HTTP/1.1 ") || !strings.HasSuffix(string(out), "\r\n\r\n") {
			t.Fatalf("HEAD %s answered %q, %v", path, out, err)
		}
	}
}

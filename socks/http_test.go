package socks

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

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

// A request whose headers never end costs the front 64 KiB of reading and
// a 431, whatever the client sends: before the cap, a 200 MiB header line
// made it allocate 1.3 GiB.
func TestHTTPFrontHeaderCap(t *testing.T) {
	addr := serveFront(t, func(context.Context, string, uint16) (transport.HalfConn, error) { return nil, dialer.ErrNotTunnel })
	const sent = 32 << 20
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var wg sync.WaitGroup
	var written int
	wg.Go(func() {
		if _, err := io.WriteString(c, "GET /proxy.pac HTTP/1.1\r\nHost: x\r\nX-Big: "); err != nil {
			return
		}
		for written < sent {
			n, err := c.Write(chunk)
			written += n
			if err != nil {
				return // the server closed, having read what it wanted
			}
		}
	})
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	wg.Wait()
	runtime.ReadMemStats(&after)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("a header line of %d MiB (%d MiB written before the server closed): 431, %d KiB allocated by the whole process meanwhile",
		sent>>20, written>>20, alloc>>10)
	if alloc > 1<<20 {
		t.Fatalf("%d KiB allocated for one oversized request; want at most 1 MiB", alloc>>10)
	}

	// Just under the cap is still a request.
	c2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c2, "GET /proxy.pac HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("b", maxRequestHeader-200)+"\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c2), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("headers just under the cap: %d, want 200", resp.StatusCode)
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

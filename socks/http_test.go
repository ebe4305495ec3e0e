package socks

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer"
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
	addr := serveFront(t, func(context.Context, Request) (transport.HalfConn, error) { return nil, ErrNotTunnel })
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

func TestHTTPConnect(t *testing.T) {
	echo := echoTCP(t)
	w := startWorld(t, []peer.Port{{Remote: 22, Target: echo}}, nil)
	addr := serveFront(t, w.dialer.Dial)
	name := w.device.Key().ID().String() + ".tunnel"
	connect := func(target string, extra string) (*bufio.Reader, net.Conn, int) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"+extra)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		return br, c, resp.StatusCode
	}
	// Bytes sent right behind the request (optimistic clients) arrive.
	br, c, code := connect(name+":22", "early")
	if code != 200 {
		t.Fatalf("CONNECT %s: %d", name, code)
	}
	io.WriteString(c, " bytes")
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(br)
	c.Close()
	if string(got) != "early bytes" {
		t.Fatalf("echo %q", got)
	}
	for target, want := range map[string]int{
		"example.com:443": http.StatusForbidden,
		"127.0.0.1:22":    http.StatusForbidden,
		name + ":23":      http.StatusBadGateway,
		"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.tunnel:22": http.StatusBadGateway,
		"nohost": http.StatusBadRequest,
	} {
		_, c, code := connect(target, "")
		c.Close()
		if code != want {
			t.Errorf("CONNECT %s: %d, want %d", target, code, want)
		}
	}
}

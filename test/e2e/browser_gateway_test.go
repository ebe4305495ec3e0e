//go:build linux

package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Headless Chromium through the public gateway, in a loopback-only
// namespace like TestBrowser: the page loads with the gateway as SOCKS5
// proxy, through the gateway's HTTP routing by host name, and a WebSocket
// opened by the page echoes through that routing.

const (
	gwBrowserSocks  = "127.0.0.1:1081"
	gwBrowserHTTP   = "127.0.0.1:8088"
	gwBrowserRelay  = "127.0.0.1:7443"
	gwBrowserDomain = "gw.test"
)

// wsSite serves the browser site plus /ws (a WebSocket echo) and
// /wspage/NONCE, a page whose script echoes "echo-NONCE" over /ws. The page
// also holds an image that the server answers only once the echo went out,
// so the page's load event — when Chromium dumps the DOM — comes after it.
type wsSite struct {
	*browserSite
	mu     sync.Mutex
	echoed map[string]chan struct{}
}

func (s *wsSite) echo(nonce string) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.echoed[nonce]
	if !ok {
		ch = make(chan struct{})
		s.echoed[nonce] = ch
	}
	return ch
}

func (s *wsSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/ws":
		s.websocket(w, r)
	case strings.HasPrefix(r.URL.Path, "/wspage/"):
		nonce := strings.TrimPrefix(r.URL.Path, "/wspage/")
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html><html><head><title>ws %s</title></head><body>
<script>
var ws = new WebSocket("ws://" + location.host + "/ws");
ws.onopen = function () { ws.send("echo-%s"); };
ws.onmessage = function (e) {
  var p = document.createElement("p"); p.id = "ws-echo"; p.textContent = "got-" + e.data;
  document.body.appendChild(p);
};
</script>
<img src="/hold/%s" alt="">
</body></html>`, nonce, nonce, nonce)
	case strings.HasPrefix(r.URL.Path, "/hold/"):
		select {
		case <-s.echo(strings.TrimPrefix(r.URL.Path, "/hold/")):
			time.Sleep(100 * time.Millisecond) // the echo frame reaches the page first
		case <-time.After(10 * time.Second):
		}
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(s.png)
	default:
		s.browserSite.ServeHTTP(w, r)
	}
}

// websocket echoes frames like the gateway suite's site, and marks each
// "echo-NONCE" it sent back so that /hold/NONCE may answer.
func (s *wsSite) websocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" {
		http.Error(w, "want a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", gwWSAccept(key))
	if brw.Flush() != nil {
		return
	}
	for {
		op, payload, _, err := gwReadFrame(brw.Reader)
		if err != nil || op == gwWSClose {
			return
		}
		if op != gwWSText || gwWriteFrame(c, op, payload, false) != nil {
			return
		}
		if nonce, ok := strings.CutPrefix(string(payload), "echo-"); ok {
			ch := s.echo(nonce)
			s.mu.Lock()
			select {
			case <-ch:
			default:
				close(ch)
			}
			s.mu.Unlock()
		}
	}
}

func TestBrowserGateway(t *testing.T) {
	needChromium(t)
	ns := newLoopbackNetns(t, "browsergw")
	bs, err := newBrowserSite()
	if err != nil {
		t.Fatal(err)
	}
	site := &wsSite{browserSite: bs, echoed: map[string]chan struct{}{}}
	var ln net.Listener
	if err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: site, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	homes := map[string]string{}
	for _, role := range []string{"relay", "device", "gateway"} {
		homes[role] = filepath.Join(dir, role)
		if err := os.MkdirAll(homes[role], 0o700); err != nil {
			t.Fatal(err)
		}
	}
	startTunnelIn(t, ns, "relay", homes["relay"], "relay", "--listen", gwBrowserRelay)
	id := tunnelID(t, homes["device"])
	dev := startTunnelIn(t, ns, "publish", homes["device"], "publish", "--relay", gwBrowserRelay,
		"-public", fmt.Sprintf("127.0.0.1:%d:80", port))
	gw := startTunnelIn(t, ns, "gateway", homes["gateway"], "gateway", "--relay", gwBrowserRelay,
		"--socks", gwBrowserSocks, "--http", gwBrowserHTTP, "--domain", gwBrowserDomain)
	if err := inNetns(ns, func() error {
		_, err := waitReachable(gwBrowserSocks, id+".tunnel", 80, 20*time.Second)
		return err
	}); err != nil {
		t.Fatalf("gateway never reached the device: %v\ngateway:\n%s\ndevice:\n%s", err, tail(gw.log(), 30, 8<<10), tail(dev.log(), 30, 8<<10))
	}
	_, httpPort, _ := net.SplitHostPort(gwBrowserHTTP)
	gwHost := id + "." + gwBrowserDomain + ":" + httpPort
	resolve := "--host-resolver-rules=MAP *." + gwBrowserDomain + " 127.0.0.1"

	page := func(t *testing.T, url string, flags []string, nonce, wantHost string) string {
		t.Helper()
		r := runChromium(t, ns, chromeRun{URL: url, Flags: flags})
		dom := string(r.Stdout)
		if r.Code != 0 || r.TimedOut {
			t.Fatalf("chromium %s: %s\nstderr: %s", url, r, chromeNoise(r.Stderr))
		}
		if wantHost != "" {
			for _, q := range site.requests(nonce) {
				if q.Host != wantHost {
					t.Errorf("device saw Host %q, want %q", q.Host, wantHost)
				}
			}
		}
		t.Logf("%s rendered in %s", url, r.Elapsed.Round(time.Millisecond))
		return dom
	}
	checkPage := func(t *testing.T, dom, nonce string) {
		t.Helper()
		for _, want := range []string{"<title>tunnel-e2e page " + nonce + "</title>", `<p id="js-marker">js-ran-` + nonce + `</p>`,
			fmt.Sprintf(`data-img="%dx%d"`, siteImageW, siteImageH)} {
			if !strings.Contains(dom, want) {
				t.Errorf("DOM lacks %q:\n%s", want, tail(dom, 30, 8<<10))
			}
		}
	}

	t.Run("gateway-socks5", func(t *testing.T) {
		nonce := newNonce(t)
		dom := page(t, "http://"+id+".tunnel/p/"+nonce+"/", []string{"--proxy-server=socks5://" + gwBrowserSocks}, nonce, id+".tunnel")
		checkPage(t, dom, nonce)
	})
	t.Run("gateway-http-routing", func(t *testing.T) {
		nonce := newNonce(t)
		dom := page(t, "http://"+gwHost+"/p/"+nonce+"/", []string{resolve}, nonce, gwHost)
		checkPage(t, dom, nonce)
	})
	t.Run("gateway-websocket", func(t *testing.T) {
		nonce := newNonce(t)
		dom := page(t, "http://"+gwHost+"/wspage/"+nonce, []string{resolve}, "", "")
		if !strings.Contains(dom, `<p id="ws-echo">got-echo-`+nonce+`</p>`) {
			t.Errorf("the page's WebSocket echo did not come back through the gateway:\n%s\ngateway:\n%s",
				tail(dom, 30, 8<<10), tail(gw.log(), 20, 8<<10))
		}
	})
}

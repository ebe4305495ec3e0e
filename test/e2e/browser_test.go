//go:build linux

package e2e

// A device's web page in a real browser: headless Chromium loads
// http://<id>.tunnel/ through socksd, configured the ways a user would
// configure it (a SOCKS5 proxy, the PAC file socksd serves, socksd as an
// HTTP proxy for https), and the page must render with its subresources.
//
// Everything runs in one loopback-only network namespace (see
// browser_env_test.go): socksd with its embedded rendezvous node on
// 127.0.0.1:1080 / 127.0.0.1:7443, the device agent, the device's web
// servers and Chromium. Chromium has no DNS and no route anywhere, so a
// page that renders came through socksd.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Inside the browser namespace everything is ours, so the ports are the
// documented defaults.
const (
	browserSocks = "127.0.0.1:1080"
	browserRelay = "127.0.0.1:7443"
)

// siteImageW and siteImageH are the size of the page's image; the page's
// script writes the size it decoded into the DOM.
const siteImageW, siteImageH = 3, 2

// siteRequest is one request a device's web server saw.
type siteRequest struct {
	Path, Host, UserAgent string
	TLS                   bool
}

// browserSite is the device's web site. Pages live at /p/NONCE/, so that
// each load has its own token: the page's <title> carries it, app.js
// writes it into the DOM and records the decoded size of logo.png there.
type browserSite struct {
	png []byte

	mu   sync.Mutex
	reqs []siteRequest
}

var sitePathRE = regexp.MustCompile(`^/p/([a-z0-9-]+)/(|app\.js|logo\.png)$`)

func newBrowserSite() (*browserSite, error) {
	img := image.NewNRGBA(image.Rect(0, 0, siteImageW, siteImageH))
	for x := 0; x < siteImageW; x++ {
		for y := 0; y < siteImageH; y++ {
			img.Set(x, y, color.NRGBA{R: 0x20, G: 0x80, B: 0xd0, A: 0xff})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		return nil, err
	}
	return &browserSite{png: b.Bytes()}, nil
}

func (s *browserSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, siteRequest{Path: r.URL.Path, Host: r.Host, UserAgent: r.UserAgent(), TLS: r.TLS != nil})
	s.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	m := sitePathRE.FindStringSubmatch(r.URL.Path)
	if m == nil || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	nonce := m[1]
	switch m[2] {
	case "":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tunnel-e2e page %s</title></head>
<body>
<h1>A device's web page, through tunnel</h1>
<img id="logo" src="logo.png" alt="logo">
<script src="app.js"></script>
</body></html>
`, nonce)
	case "app.js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
		// The markers exist only if this script ran (they are not in the
		// HTML) and only for this nonce.
		fmt.Fprintf(w, `(function () {
  var n = %q;
  var p = document.createElement("p");
  p.id = "js-marker";
  p.textContent = "js-ran-" + n;
  document.body.appendChild(p);
  document.body.dataset.js = "ran-" + n;
  var img = document.getElementById("logo");
  function done() { document.body.dataset.img = img.naturalWidth + "x" + img.naturalHeight; }
  if (img.complete) { done(); } else { img.addEventListener("load", done); img.addEventListener("error", done); }
})();
`, nonce)
	case "logo.png":
		w.Header().Set("Content-Type", "image/png")
		_, _ = w.Write(s.png)
	}
}

// requests returns the requests for pages of nonce.
func (s *browserSite) requests(nonce string) []siteRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []siteRequest
	for _, r := range s.reqs {
		if strings.HasPrefix(r.Path, "/p/"+nonce+"/") {
			out = append(out, r)
		}
	}
	return out
}

// browserEnv is the namespace with socksd, a device publishing the site on
// port 80 (plain HTTP) and 443 (HTTPS, self-signed), and the site.
type browserEnv struct {
	ns     string
	host   string // <device-id>.tunnel
	site   *browserSite
	socksd *proc
	device *proc
}

func newBrowserEnv(t *testing.T) *browserEnv {
	t.Helper()
	needChromium(t)
	start := time.Now()
	e := &browserEnv{ns: newLoopbackNetns(t, "browser")}
	var err error
	if e.site, err = newBrowserSite(); err != nil {
		t.Fatal(err)
	}

	// The device's web servers listen on the namespace's loopback.
	var lnHTTP, lnTLS net.Listener
	if err := inNetns(e.ns, func() error {
		var err error
		if lnHTTP, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		lnTLS, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		if lnHTTP != nil {
			lnHTTP.Close()
		}
		t.Fatalf("listening in %s: %v", e.ns, err)
	}
	srv := &http.Server{Handler: e.site, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(lnHTTP) }()
	t.Cleanup(func() { _ = srv.Close() })
	ts := httptest.NewUnstartedServer(e.site)
	ts.Listener.Close()
	ts.Listener = lnTLS
	ts.Config.ReadHeaderTimeout = 10 * time.Second
	// The readiness check below opens a CONNECT to port 443 and closes it
	// without TLS; the server would log a handshake error for it.
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	t.Cleanup(ts.Close)
	httpPort := lnHTTP.Addr().(*net.TCPAddr).Port
	tlsPort := lnTLS.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	socksHome, deviceHome := filepath.Join(dir, "socksd-home"), filepath.Join(dir, "device-home")
	for _, d := range []string{socksHome, deviceHome} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	e.socksd = startTunnelIn(t, e.ns, "socksd", socksHome,
		"socksd", "--listen", browserSocks, "--relay-listen", browserRelay)
	e.host = tunnelID(t, deviceHome) + ".tunnel"
	e.device = startTunnelIn(t, e.ns, "publish", deviceHome, "publish", "--relay", browserRelay,
		"-public", fmt.Sprintf("127.0.0.1:%d:80", httpPort),
		"-public", fmt.Sprintf("127.0.0.1:%d:443", tlsPort))
	if err := inNetns(e.ns, func() error {
		for _, port := range []int{80, 443} {
			if _, err := waitReachable(browserSocks, e.host, port, 20*time.Second); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatalf("in %s: %v", e.ns, err)
	}
	t.Logf("browser namespace %s ready in %s: socksd %s, relay %s, device %s (80 -> 127.0.0.1:%d, 443 -> 127.0.0.1:%d TLS)",
		e.ns, time.Since(start).Round(time.Millisecond), browserSocks, browserRelay, e.host, httpPort, tlsPort)
	return e
}

// pageLoad is one page load to check.
type pageLoad struct {
	scheme     string   // http or https
	flags      []string // how Chromium is told about the proxy
	screenshot bool     // also take a screenshot and check the PNG
}

// load loads a fresh page of the site in Chromium and checks that it
// rendered with both subresources, that the site saw Host: <id>.tunnel
// from Chromium for all three requests, and that socksd and the device
// carried them. It returns the nonce and where socksd's log stood before.
func (e *browserEnv) load(t *testing.T, pl pageLoad) (nonce string, socksLogOff int64) {
	t.Helper()
	nonce = newNonce(t)
	url := pl.scheme + "://" + e.host + "/p/" + nonce + "/"
	socksLogOff, devLogOff := e.socksd.logSize(), e.device.logSize()
	run := chromeRun{URL: url, Flags: pl.flags}
	if pl.screenshot {
		run.Screenshot = filepath.Join(t.TempDir(), "page.png")
	}
	r := runChromium(t, e.ns, run)
	dom := string(r.Stdout)
	if r.Code != 0 || r.TimedOut {
		t.Fatalf("chromium %s: exit %d (timed out: %v) after %s\nDOM: %s\nstderr: %s", url, r.Code, r.TimedOut,
			r.Elapsed.Round(time.Millisecond), tail(dom, 20, 4<<10), chromeNoise(r.Stderr))
	}
	ok := true
	for _, want := range []struct{ what, s string }{
		{"the page's <title> token", "<title>tunnel-e2e page " + nonce + "</title>"},
		{"the marker app.js appends", `<p id="js-marker">js-ran-` + nonce + `</p>`},
		{"the attribute app.js sets", `data-js="ran-` + nonce + `"`},
		{"the decoded size of logo.png", fmt.Sprintf(`data-img="%dx%d"`, siteImageW, siteImageH)},
	} {
		if !strings.Contains(dom, want.s) {
			t.Errorf("DOM lacks %s (%s)", want.what, want.s)
			ok = false
		}
	}
	if !ok {
		t.Logf("DOM of %s:\n%s\nchromium stderr:\n%s", url, tail(dom, 40, 8<<10), chromeNoise(r.Stderr))
	}

	// The device's server saw the three requests, by name, from Chromium.
	reqs := e.site.requests(nonce)
	seen := map[string]bool{}
	for _, q := range reqs {
		seen[strings.TrimPrefix(q.Path, "/p/"+nonce+"/")] = true
		if q.Host != e.host {
			t.Errorf("device's web server saw Host %q for %s, want %q", q.Host, q.Path, e.host)
		}
		if !strings.Contains(q.UserAgent, "Chrome/") {
			t.Errorf("request for %s has User-Agent %q, not Chromium's", q.Path, q.UserAgent)
		}
		if q.TLS != (pl.scheme == "https") {
			t.Errorf("request for %s: TLS %v, want %v", q.Path, q.TLS, pl.scheme == "https")
		}
	}
	for _, p := range []string{"", "app.js", "logo.png"} {
		if !seen[p] {
			t.Errorf("device's web server never got /p/%s/%s (got %+v)", nonce, p, reqs)
		}
	}

	// socksd carried them: one CONNECT line (SOCKS5 or HTTP) per connection,
	// written when it closes, so wait a little for Chromium's to close.
	port := 80
	if pl.scheme == "https" {
		port = 443
	}
	msg := "socks connect"
	if pl.scheme == "https" {
		msg = "http connect"
	}
	lines := waitJSONLog(e.socksd, socksLogOff, 5*time.Second, func(m map[string]any) bool {
		if m["message"] != msg {
			return false
		}
		if msg == "http connect" {
			return m["target"] == e.host+":443" && m["status"] == 200.0 && num(m["down"]) > 0
		}
		return m["host"] == e.host && m["port"] == float64(port) && m["reply"] == "0x00" && num(m["down"]) > 0
	})
	if len(lines) == 0 {
		t.Errorf("socksd logged no successful %q to %s:%d carrying data; its log during the load:\n%s",
			msg, e.host, port, tail(e.socksd.logSince(socksLogOff), 40, 16<<10))
	}
	streams := waitJSONLog(e.device, devLogOff, 5*time.Second, func(m map[string]any) bool {
		return m["message"] == "stream" && m["port"] == float64(port) && (m["outcome"] == "ok" || m["outcome"] == "aborted")
	})
	if len(streams) == 0 {
		t.Errorf("device logged no stream to port %d; its log during the load:\n%s",
			port, tail(e.device.logSince(devLogOff), 40, 16<<10))
	}

	if pl.screenshot {
		checkScreenshot(t, run.Screenshot)
	}
	t.Logf("%s rendered in %s: %d requests, %d tunneled connections", url, r.Elapsed.Round(time.Millisecond), len(reqs), len(lines))
	return nonce, socksLogOff
}

// checkScreenshot checks that path is a PNG of the window's size.
func checkScreenshot(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("no screenshot: %v", err)
		return
	}
	if !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) {
		t.Errorf("screenshot %s (%d bytes) is not a PNG", path, len(b))
		return
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		t.Errorf("screenshot %s: %v", path, err)
		return
	}
	if cfg.Width != 800 || cfg.Height != 600 {
		t.Errorf("screenshot is %dx%d, want 800x600 (--window-size)", cfg.Width, cfg.Height)
	}
	t.Logf("screenshot: %d bytes, %dx%d PNG", len(b), cfg.Width, cfg.Height)
}

func newNonce(t *testing.T) string {
	t.Helper()
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(sanitize(t.Name()[strings.LastIndexByte(t.Name(), '/')+1:])) + "-" + hex.EncodeToString(b[:])
}

// jsonLog returns the JSON lines of p's log from off on that match.
func jsonLog(p *proc, off int64, match func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.logSince(off), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && match(m) {
			out = append(out, m)
		}
	}
	return out
}

// waitJSONLog polls jsonLog until something matches or timeout passes.
func waitJSONLog(p *proc, off int64, timeout time.Duration, match func(map[string]any) bool) []map[string]any {
	deadline := time.Now().Add(timeout)
	for {
		if got := jsonLog(p, off, match); len(got) > 0 || time.Now().After(deadline) {
			return got
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func num(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case string:
		f, _ := strconv.ParseFloat(x, 64)
		return f
	}
	return 0
}

// TestBrowser loads a device's web page in headless Chromium through
// socksd: as a SOCKS5 proxy, through socksd's PAC file, and (https) with
// socksd as an HTTP CONNECT proxy; and checks that without a proxy the
// browser cannot reach it at all, so the loads above went through tunnel.
func TestBrowser(t *testing.T) {
	e := newBrowserEnv(t)

	t.Run("socks5", func(t *testing.T) {
		e.load(t, pageLoad{scheme: "http", flags: []string{"--proxy-server=socks5://" + browserSocks}, screenshot: true})
	})

	t.Run("pac", func(t *testing.T) {
		_, off := e.load(t, pageLoad{scheme: "http", flags: []string{"--proxy-pac-url=http://" + browserSocks + "/proxy.pac"}})
		pac := jsonLog(e.socksd, off, func(m map[string]any) bool {
			return m["message"] == "pac" && m["path"] == "/proxy.pac" && m["status"] == 200.0
		})
		if len(pac) == 0 {
			t.Errorf("socksd did not log serving /proxy.pac to Chromium; its log during the load:\n%s",
				tail(e.socksd.logSince(off), 40, 16<<10))
		}
	})

	t.Run("https-connect", func(t *testing.T) {
		// Chromium speaks CONNECT to an HTTP proxy for https:// URLs only;
		// the device's certificate is httptest's, hence the flag.
		e.load(t, pageLoad{scheme: "https", flags: []string{"--proxy-server=http://" + browserSocks, "--ignore-certificate-errors"}})
	})

	t.Run("no-proxy", func(t *testing.T) {
		// The namespace has no DNS and no route: without socksd a .tunnel
		// name must not load, or the loads above prove nothing.
		nonce := newNonce(t)
		url := "http://" + e.host + "/p/" + nonce + "/"
		off := e.socksd.logSize()
		r := runChromium(t, e.ns, chromeRun{URL: url})
		if r.TimedOut {
			t.Fatalf("chromium without a proxy did not finish: %s", r)
		}
		t.Logf("without a proxy, as it should: %s", chromeNoise(r.Stderr))
		if strings.Contains(string(r.Stdout), "tunnel-e2e page "+nonce) {
			t.Errorf("the page loaded without a proxy: the namespace is not isolated\nDOM: %s", tail(string(r.Stdout), 20, 4<<10))
		}
		if reqs := e.site.requests(nonce); len(reqs) > 0 {
			t.Errorf("the device's web server got requests without a proxy: %+v", reqs)
		}
		if got := e.socksd.logSince(off); strings.Contains(got, e.host) {
			t.Errorf("socksd saw %s although Chromium had no proxy:\n%s", e.host, tail(got, 20, 8<<10))
		}
	})
}

//go:build linux

package e2e

// The public gateway (`tunnel gateway`) end to end, with real processes on
// loopback: a rendezvous node (`tunnel relay`), one device and the gateway.
// The device publishes
//
//	<id>.tunnel:80   -> web site "80"           -public 127.0.0.1:SITE80:80
//	<id>.tunnel:8080 -> web site "8080" + /ws   -public 127.0.0.1:SITE8080:8080
//	<id>.tunnel:7001 -> echo                    -public 127.0.0.1:ECHO:7001
//	<id>.tunnel:22   -> sshd                    -private 127.0.0.1:SSHD:22,<someone else>
//	<id>.tunnel:2222 -> sshd                    -public 127.0.0.1:SSHD:2222
//
// and the gateway serves SOCKS5, HTTP and HTTPS (a wildcard certificate for
// *.gw.test from a CA the test makes) for domain gw.test. The sites answer
// with the Host and X-Forwarded-* headers they saw (as X-Seen-* response
// headers); /ws is a WebSocket echo (RFC 6455, hand-rolled on both ends).
//
// The gateway dials devices with its own key, so the device's policy sees
// the gateway as the client: only -public ports are reachable through it.
// The main gateway runs with a loopback-only resolver (isolate_test.go), and
// the test listens where that resolver points, so a DNS query for a
// non-.tunnel name (which the gateway must never make) would be seen.

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	gwDomain   = "gw.test"
	gwEchoPort = 7001 // the device's echo port
)

// gwWorld is the rendezvous node and the device, shared by the gateways of
// one test.
type gwWorld struct {
	relay    string // UDP 127.0.0.1:PORT of the rendezvous node
	device   *proc
	deviceID string
	other    string // the only client the private port lists ("" without sshd)
	site80   *gwSite
	site8080 *gwSite
	echo     *tcpServer
}

func (w *gwWorld) host() string { return w.deviceID + ".tunnel" }

// web is the gateway's name for a device port: <id>.gw.test for 80,
// <id>-PORT.gw.test for the others.
func (w *gwWorld) web(port int) string {
	if port == 80 {
		return w.deviceID + "." + gwDomain
	}
	return fmt.Sprintf("%s-%d.%s", w.deviceID, port, gwDomain)
}

// startGWWorld starts the web sites, the echo server, `tunnel relay` and a
// device publishing them; with sshdPort it also publishes that sshd as
// private port 22 (for a client that is not the gateway) and public 2222.
func startGWWorld(t *testing.T, sshdPort int) *gwWorld {
	t.Helper()
	w := &gwWorld{site80: startGWSite(t, "80"), site8080: startGWSite(t, "8080")}
	var err error
	if w.echo, err = startTCPServer(echoHandler); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.echo.close)

	w.relay = addr(freePort(t, "udp"))
	startTunnel(t, "relay", t.TempDir(), nil, "relay", "--listen", w.relay)

	home := t.TempDir()
	w.deviceID = tunnelID(t, home)
	args := []string{"--log-format", "json", "publish", "--relay", w.relay,
		"-public", fmt.Sprintf("127.0.0.1:%d:80", w.site80.port),
		"-public", fmt.Sprintf("127.0.0.1:%d:8080", w.site8080.port),
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", w.echo.port, gwEchoPort),
	}
	if sshdPort != 0 {
		w.other = tunnelID(t, t.TempDir())
		args = append(args,
			"-private", fmt.Sprintf("127.0.0.1:%d:22,%s", sshdPort, w.other),
			"-public", fmt.Sprintf("127.0.0.1:%d:2222", sshdPort))
	}
	w.device = startTunnel(t, "publish", home, nil, args...)
	if !w.device.waitLog("registered with relay", 1, 20*time.Second) {
		t.Fatalf("the device never registered with the rendezvous node at %s", w.relay)
	}
	return w
}

// gwOpts says which gateway to start.
type gwOpts struct {
	name        string
	socks, http bool
	https       *gwCert  // nil: no --https
	wrap        []string // a command prefix (loopbackDNSWrapper), or nil
	from        string   // source address of the readiness probe (budgets are per source)
	extra       []string // more gateway flags
}

type gwGateway struct {
	proc               *proc
	id, home           string
	socks, http, https string // 127.0.0.1:PORT, or "" when not served
}

// startGWGateway starts `tunnel gateway` against w's rendezvous node and, if
// it serves SOCKS, waits until the device's port 80 answers through it.
func startGWGateway(t *testing.T, w *gwWorld, o gwOpts) *gwGateway {
	t.Helper()
	g := &gwGateway{home: t.TempDir()}
	args := []string{"--log-format", "json", "gateway", "--relay", w.relay}
	if o.socks {
		g.socks = addr(freePort(t, "tcp"))
		args = append(args, "--socks", g.socks)
	}
	if o.http {
		g.http = addr(freePort(t, "tcp"))
		args = append(args, "--http", g.http)
	}
	if o.https != nil {
		g.https = addr(freePort(t, "tcp"))
		args = append(args, "--https", g.https, "--tls-cert", o.https.cert, "--tls-key", o.https.key)
	}
	if o.http || o.https != nil {
		args = append(args, "--domain", gwDomain)
	}
	args = append(args, o.extra...)
	if o.wrap != nil {
		full := append(append([]string{}, o.wrap[1:]...), tunnelBin)
		g.proc = startCmd(t, o.name, nil, o.wrap[0], append(full, tunnelArgs(g.home, args...)...)...)
	} else {
		g.proc = startTunnel(t, o.name, g.home, nil, args...)
	}
	if !g.proc.waitLog("gateway listening", 1, 15*time.Second) {
		t.Fatalf("%s never logged %q (%s)", o.name, "gateway listening", g.proc.exitDesc())
	}
	// The gateway dials with its own key (gateway.key), not the home's
	// node.key that 'tunnel id' prints: its ID is the one it logs.
	for _, m := range gwLogLines(g.proc, func(m map[string]any) bool { return m["message"] == "gateway listening" }) {
		g.id, _ = m["id"].(string)
	}
	if g.id == "" || g.id == tunnelID(t, g.home) {
		t.Fatalf("%s: gateway listening with id %q, want its own ID, not node.key's", o.name, g.id)
	}
	if o.socks {
		took, err := gwWaitReachable(o.from, g.socks, w.host(), 80, 20*time.Second)
		if err != nil {
			t.Fatalf("%s: %v", o.name, err)
		}
		t.Logf("%s (ID %s): device reachable through its SOCKS after %s", o.name, g.id, took.Round(time.Millisecond))
	}
	return g
}

// ---- the device's web sites ----

// gwSite is a device's web server: any path answers gwPage and reports the
// Host and X-Forwarded-* headers it saw in X-Seen-* response headers; /ws
// is a WebSocket echo.
type gwSite struct {
	name string
	port int
	srv  *http.Server
}

func gwPage(site, host string) string {
	return "tunnel-e2e gateway site=" + site + " host=" + host + "\n"
}

func startGWSite(t *testing.T, name string) *gwSite {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &gwSite{name: name, port: ln.Addr().(*net.TCPAddr).Port}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	t.Cleanup(func() { _ = s.srv.Close() })
	return s
}

func (s *gwSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ws" {
		s.websocket(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Seen-Host", r.Host)
	h.Set("X-Seen-XFF", strings.Join(r.Header.Values("X-Forwarded-For"), ", "))
	h.Set("X-Seen-XFH", strings.Join(r.Header.Values("X-Forwarded-Host"), ", "))
	h.Set("X-Seen-XFP", strings.Join(r.Header.Values("X-Forwarded-Proto"), ", "))
	_, _ = io.WriteString(w, gwPage(s.name, r.Host))
}

// websocket answers an RFC 6455 upgrade and echoes each text or binary
// frame (unmasked, as a server sends), answers pings, and echoes a close
// frame before closing. Client frames must be masked.
func (s *gwSite) websocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") || key == "" ||
		r.Header.Get("Sec-WebSocket-Version") != "13" {
		http.Error(w, "want a WebSocket upgrade", http.StatusBadRequest)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Accept: %s\r\nX-Seen-Host: %s\r\n\r\n", gwWSAccept(key), r.Host)
	if brw.Flush() != nil {
		return
	}
	for {
		op, payload, masked, err := gwReadFrame(brw.Reader)
		if err != nil {
			return
		}
		if !masked { // RFC 6455 §5.1: close with 1002 (protocol error)
			_ = gwWriteFrame(c, gwWSClose, []byte{0x03, 0xea}, false)
			return
		}
		switch op {
		case gwWSText, gwWSBinary:
			if gwWriteFrame(c, op, payload, false) != nil {
				return
			}
		case gwWSPing:
			_ = gwWriteFrame(c, gwWSPong, payload, false)
		case gwWSClose:
			_ = gwWriteFrame(c, gwWSClose, payload, false)
			return
		}
	}
}

// ---- a minimal WebSocket (RFC 6455): unfragmented frames only ----

const (
	gwWSText   = 0x1
	gwWSBinary = 0x2
	gwWSClose  = 0x8
	gwWSPing   = 0x9
	gwWSPong   = 0xa
)

func gwWSAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// gwWriteFrame writes one final frame; clients mask (mask=true), servers
// do not.
func gwWriteFrame(w io.Writer, op byte, payload []byte, mask bool) error {
	b := []byte{0x80 | op}
	var m byte
	if mask {
		m = 0x80
	}
	switch n := len(payload); {
	case n <= 125:
		b = append(b, m|byte(n))
	case n <= 0xffff:
		b = append(b, m|126)
		b = binary.BigEndian.AppendUint16(b, uint16(n))
	default:
		b = append(b, m|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	if mask {
		key := random(4)
		b = append(b, key...)
		for i, c := range payload {
			b = append(b, c^key[i%4])
		}
	} else {
		b = append(b, payload...)
	}
	_, err := w.Write(b)
	return err
}

// gwReadFrame reads one frame (up to 1 MiB; fragments are an error) and
// unmasks it.
func gwReadFrame(r io.Reader) (op byte, payload []byte, masked bool, err error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, false, err
	}
	if h[0]&0x80 == 0 || h[0]&0x70 != 0 {
		return 0, nil, false, fmt.Errorf("frame header % x: fragmented or with RSV bits", h)
	}
	op, masked = h[0]&0x0f, h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, false, err
		}
		n = uint64(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, nil, false, err
		}
		n = binary.BigEndian.Uint64(l[:])
	}
	if n > 1<<20 {
		return 0, nil, false, fmt.Errorf("frame of %d bytes", n)
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return 0, nil, false, err
		}
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, false, err
	}
	if masked {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return op, payload, masked, nil
}

// gwWSOpen connects to a gateway's HTTP address and upgrades GET /ws on
// host; it checks the 101 and the Sec-WebSocket-Accept.
func gwWSOpen(t *testing.T, gwAddr, host string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", gwAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	key := base64.StdEncoding.EncodeToString(random(16))
	fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", host, key)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("WebSocket upgrade through %s for %s: %v", gwAddr, host, err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-WebSocket-Accept") != gwWSAccept(key) ||
		!strings.EqualFold(res.Header.Get("Upgrade"), "websocket") {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4<<10))
		t.Fatalf("WebSocket upgrade for %s answered %s %v %q; want 101 with Sec-WebSocket-Accept %s",
			host, res.Status, res.Header, body, gwWSAccept(key))
	}
	if seen := res.Header.Get("X-Seen-Host"); seen != host {
		t.Errorf("the device's WebSocket server saw Host %q, want %q", seen, host)
	}
	return c, br
}

// gwWSEcho sends msg as one masked text frame and wants it back, unmasked.
func gwWSEcho(t *testing.T, c net.Conn, br *bufio.Reader, msg string) {
	t.Helper()
	if err := gwWriteFrame(c, gwWSText, []byte(msg), true); err != nil {
		t.Fatalf("WebSocket write: %v", err)
	}
	op, payload, masked, err := gwReadFrame(br)
	if err != nil || op != gwWSText || masked || string(payload) != msg {
		t.Fatalf("WebSocket echo of %q: op %#x masked %v payload %q err %v; want an unmasked text frame with the same text",
			msg, op, masked, payload, err)
	}
}

// ---- SOCKS and HTTP clients from a chosen source address ----

// gwDialer dials from the loopback address from ("" for the kernel's choice).
func gwDialer(from string) *net.Dialer {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	return d
}

// gwSocksFrom is socksRequest (socks_test.go) for CONNECT, sent from the
// source address from: the gateway's budgets are per source address.
func gwSocksFrom(from, proxy string, atyp byte, host string, port int) (socksReply, error) {
	var rep socksReply
	dst, err := encodeAddr(atyp, host)
	if err != nil {
		return rep, err
	}
	start := time.Now()
	c, err := gwDialer(from).Dial("tcp", proxy)
	if err != nil {
		return rep, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return rep, fmt.Errorf("greeting: %w", err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil || sel != [2]byte{5, 0} {
		return rep, fmt.Errorf("method selection: % x, %v", sel[:], err)
	}
	req := binary.BigEndian.AppendUint16(append([]byte{5, cmdConnect, 0}, dst...), uint16(port))
	if _, err := c.Write(req); err != nil {
		return rep, fmt.Errorf("request: %w", err)
	}
	var head [4]byte
	if _, err := io.ReadFull(c, head[:2]); err != nil {
		return rep, fmt.Errorf("reply (after %s): %w", time.Since(start).Round(time.Millisecond), err)
	}
	rep.Elapsed, rep.Code = time.Since(start), head[1]
	if head[0] != 5 {
		return rep, fmt.Errorf("reply version %d", head[0])
	}
	if rep.Code != repSucceeded {
		return rep, nil // the rest of a failure's reply does not matter
	}
	if _, err := io.ReadFull(c, head[2:]); err != nil {
		return rep, fmt.Errorf("reply header: %w", err)
	}
	n := map[byte]int{atypIPv4: 4, atypIPv6: 16}[head[3]]
	if head[3] == atypDomain {
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return rep, fmt.Errorf("reply address: %w", err)
		}
		n = int(l[0])
	} else if n == 0 {
		return rep, fmt.Errorf("reply address type 0x%02x", head[3])
	}
	if _, err := io.ReadFull(c, make([]byte, n+2)); err != nil {
		return rep, fmt.Errorf("reply address: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	rep.Conn, ok = c, true
	return rep, nil
}

// gwWaitReachable is waitReachable (socks_test.go) from a source address.
func gwWaitReachable(from, proxy, host string, port int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var last string
	for {
		rep, err := gwSocksFrom(from, proxy, atypDomain, host, port)
		if err == nil && rep.Code == repSucceeded {
			rep.Conn.Close()
			return time.Since(start), nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = "reply " + replyName(rep.Code)
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("%s:%d not reachable through SOCKS %s after %s; last: %s", host, port, proxy, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// gwEchoLine writes line on an echo stream and wants it back.
func gwEchoLine(c net.Conn, line string) error {
	if _, err := io.WriteString(c, line); err != nil {
		return fmt.Errorf("echo write: %w", err)
	}
	got, err := readLine(c, 10*time.Second)
	if got != line {
		return fmt.Errorf("echo of %q: got %q (%v)", line, got, err)
	}
	return nil
}

// gwHTTPClient is an HTTP client whose connections come from the source
// address from, at most maxConns at a time, never through a proxy.
func gwHTTPClient(from string, maxConns int) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           gwDialer(from).DialContext,
			MaxConnsPerHost:       maxConns,
			MaxIdleConnsPerHost:   maxConns,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			DisableCompression:    true,
		},
		Timeout: 30 * time.Second,
	}
}

// gwGet sends GET path to the gateway at gwAddr with Host host.
func gwGet(c *http.Client, gwAddr, host, path string) (*http.Response, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+gwAddr+path, nil)
	if err != nil {
		return nil, "", err
	}
	req.Host = host
	res, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	return res, string(body), err
}

// gwCurl runs curl -sS -i ARGS and parses the response it printed.
func gwCurl(t *testing.T, args ...string) (*http.Response, string, result) {
	t.Helper()
	full := append([]string{"-sS", "-i", "--max-time", "20"}, args...)
	r := runCmd(30*time.Second, nil, nil, "curl", full...)
	if r.Code != 0 {
		t.Fatalf("curl %s: %s", strings.Join(args, " "), r)
	}
	res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(r.Stdout)), nil)
	if err != nil {
		t.Fatalf("curl %s: unparsable response: %v\n%s", strings.Join(args, " "), err, r)
	}
	body, _ := io.ReadAll(res.Body)
	return res, string(body), r
}

// gwDirect is how curl reaches the gateway's HTTP(S) ports: never through a
// proxy from the environment.
var gwDirect = []string{"--noproxy", "*"}

// ---- logs ----

// gwLogLines are the JSON lines of p's log that match.
func gwLogLines(p *proc, match func(map[string]any) bool) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.log(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && match(m) {
			out = append(out, m)
		}
	}
	return out
}

// gwRateLines are the gateway's log lines about refusing client over its
// budget: "socks rate limited", "http connection refused", and "http
// request" lines with status 429.
func gwRateLines(p *proc, client string) []map[string]any {
	return gwLogLines(p, func(m map[string]any) bool {
		c, _ := m["client"].(string)
		if c != client && !strings.HasPrefix(c, client+":") {
			return false
		}
		switch m["message"] {
		case "socks rate limited", "http connection refused":
			return true
		case "http request":
			return fmt.Sprint(m["status"]) == "429"
		}
		return false
	})
}

func gwRaw(lines []map[string]any) string {
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(accRaw(l))
		b.WriteByte('\n')
	}
	return b.String()
}

// ---- a wildcard certificate for *.gw.test ----

type gwCert struct{ ca, cert, key string } // PEM files

// gwWriteCert makes a CA and a certificate it signs for *.DOMAIN and
// DOMAIN, as a DNS-01 wildcard from a public CA would be.
func gwWriteCert(t *testing.T, domain string) *gwCert {
	t.Helper()
	dir := t.TempDir()
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "tunnel e2e test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "*." + domain},
		DNSNames:  []string{"*." + domain, domain},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := &gwCert{ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "fullchain.pem"), key: filepath.Join(dir, "privkey.pem")}
	pemOf := func(typ string, der ...[]byte) []byte {
		var b []byte
		for _, d := range der {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: d})...)
		}
		return b
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{c.ca, pemOf("CERTIFICATE", caDER)},
		{c.cert, pemOf("CERTIFICATE", leafDER, caDER)},
		{c.key, pemOf("PRIVATE KEY", keyDER)},
	} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// ---- DNS watch ----

// gwDNSWatch listens on 127.0.0.1:53 (UDP), where loopbackDNSWrapper's
// resolv.conf points, and records the names asked. It answers nothing.
type gwDNSWatch struct {
	pc    net.PacketConn
	mu    sync.Mutex
	names []string
	wg    sync.WaitGroup
}

// gwWatchDNS returns nil (and says why) when 127.0.0.1:53 is taken.
func gwWatchDNS(t *testing.T) *gwDNSWatch {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:53")
	if err != nil {
		t.Logf("cannot listen on 127.0.0.1:53 (%v): DNS queries of the gateway will not be observed", err)
		return nil
	}
	d := &gwDNSWatch{pc: pc}
	d.wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			d.mu.Lock()
			d.names = append(d.names, gwDNSQName(buf[:n]))
			d.mu.Unlock()
		}
	})
	t.Cleanup(func() { pc.Close(); d.wg.Wait() })
	return d
}

func (d *gwDNSWatch) asked() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.names...)
}

// gwDNSQName is the first question's name of a DNS query.
func gwDNSQName(b []byte) string {
	var labels []string
	for i := 12; i < len(b); {
		l := int(b[i])
		if l == 0 || l > 63 || i+1+l > len(b) {
			break
		}
		labels = append(labels, string(b[i+1:i+1+l]))
		i += 1 + l
	}
	if len(labels) == 0 {
		return fmt.Sprintf("(unparsable query of %d bytes)", len(b))
	}
	return strings.Join(labels, ".")
}

// ---- the test ----

func TestGateway(t *testing.T) {
	start := time.Now()
	e := getEnv(t) // the prerequisites (curl, ssh, OpenBSD nc) and the shared sshd
	w := startGWWorld(t, e.sshd.port)
	dns := gwWatchDNS(t)
	cert := gwWriteCert(t, gwDomain)
	wrap := loopbackDNSWrapper(t)
	g := startGWGateway(t, w, gwOpts{name: "gateway", socks: true, http: true, https: cert,
		wrap: wrap, from: "127.0.0.1"})
	t.Logf("fixture ready in %s: device %s, gateway %s: socks %s, http %s, https %s, domain %s",
		time.Since(start).Round(time.Millisecond), w.deviceID, g.id, g.socks, g.http, g.https, gwDomain)
	host := w.host()
	// The access test's helpers for the device's stream lines.
	dev := &accessEnv{device: w.device, deviceID: w.deviceID}

	t.Run("socks/curl", func(t *testing.T) {
		for _, c := range []struct {
			url, site, host string
		}{
			{"http://" + host + "/via-socks", "80", host},
			{"http://" + host + ":8080/via-socks", "8080", host + ":8080"},
		} {
			res, body, r := gwCurl(t, "--socks5-hostname", g.socks, c.url)
			if res.StatusCode != 200 || body != gwPage(c.site, c.host) {
				t.Fatalf("curl --socks5-hostname %s %s: %s %q, want 200 %q", g.socks, c.url, res.Status, body, gwPage(c.site, c.host))
			}
			// SOCKS carries bytes: the site sees the request as curl wrote it.
			if xff := res.Header.Get("X-Seen-XFF"); xff != "" {
				t.Errorf("through SOCKS the site saw X-Forwarded-For %q; the SOCKS front must not touch the bytes", xff)
			}
			t.Logf("curl --socks5-hostname %s: %s in %s", c.url, res.Status, r.Elapsed.Round(time.Millisecond))
		}
	})

	t.Run("socks/ssh-public-port", func(t *testing.T) {
		// The control for the denial below: ssh through the gateway works
		// to the same sshd published -public.
		r := runCmd(40*time.Second, nil, nil, "ssh", "-F", e.sshd.clientConf, "-p", "2222",
			"-o", "ProxyCommand="+ncProxy(g.socks), sshUser+"@"+host, "echo gw-public-ok")
		if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "gw-public-ok" {
			t.Fatalf("ssh -p 2222 through the gateway's SOCKS to a -public port: %s", r)
		}
		t.Logf("ssh -p 2222 via %q: ok in %s", ncProxy(g.socks), r.Elapsed.Round(time.Millisecond))
	})

	t.Run("socks/private-port-denied", func(t *testing.T) {
		before := len(dev.streamLines(g.id, 22))
		rep, err := socksConnect(g.socks, host, 22)
		if rep.Conn != nil {
			rep.Conn.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		if rep.Code != repNotAllowed {
			t.Fatalf("CONNECT %s:22 (-private, listing %s only) through the gateway: %s, want 0x02",
				host, w.other, replyName(rep.Code))
		}
		t.Logf("raw CONNECT %s:22 -> %s in %s", host, replyName(rep.Code), rep.Elapsed.Round(time.Millisecond))
		// The device decided, and saw the gateway's own key as the client.
		accCheckDenial(t, dev.waitStreamLines(g.id, 22, before, 5*time.Second), g.id, 22, "not listed")

		r := e.sshd.ssh(40*time.Second, nil, nil, ncProxy(g.socks), host, "echo must-not-run")
		if r.Code == 0 || strings.Contains(string(r.Stdout), "must-not-run") {
			t.Fatalf("ssh through the gateway to the -private port 22 succeeded: %s", r)
		}
		t.Logf("ssh via %q to the private port: exit %d in %s: %s", ncProxy(g.socks), r.Code,
			r.Elapsed.Round(time.Millisecond), strings.TrimSpace(string(r.Stderr)))
	})

	t.Run("socks/reply-codes", func(t *testing.T) {
		unknown := tunnelID(t, t.TempDir())
		site := w.site80.port // listens: a direct connection would succeed
		checkCodes(t, g.socks, []codeCase{
			{name: "example.com", host: "example.com", port: 80, want: repNotAllowed, maxTime: time.Second},
			{name: "EXAMPLE.COM.", host: "EXAMPLE.COM.", port: 443, want: repNotAllowed, maxTime: time.Second},
			{name: "tunnel-lookalike", host: "example.tunnel.com", port: 80, want: repNotAllowed, maxTime: time.Second},
			{name: "localhost", host: "localhost", port: site, want: repNotAllowed, maxTime: time.Second},
			{name: "ipv4-as-name", host: "127.0.0.1", port: site, want: repNotAllowed, maxTime: time.Second},
			{name: "ipv4-atyp1", atyp: atypIPv4, host: "127.0.0.1", port: site, want: repNotAllowed, maxTime: time.Second},
			{name: "ipv6-atyp4", atyp: atypIPv6, host: "::1", port: site, want: repNotAllowed, maxTime: time.Second},
			{name: "unknown-device", host: unknown + ".tunnel", port: 80, want: repHostUnreachable, maxTime: time.Second},
			{name: "malformed-id", host: "abc.tunnel", port: 80, want: repHostUnreachable, maxTime: time.Second},
			{name: "private-port", host: host, port: 22, want: repNotAllowed, maxTime: 5 * time.Second},
			{name: "unpublished-port", host: host, port: 81, want: repRefused, maxTime: 5 * time.Second},
			{name: "bind", cmd: cmdBind, host: host, port: 80, want: repCmdNotSupported, maxTime: time.Second},
			{name: "public-port", host: host, port: 80, want: repSucceeded, maxTime: 5 * time.Second},
		})
	})

	t.Run("http/host-header", func(t *testing.T) {
		name := w.web(80)
		res, body, r := gwCurl(t, append(gwDirect, "-H", "Host: "+name,
			// Whatever a client claims is dropped, never passed on.
			"-H", "X-Forwarded-For: 203.0.113.9", "-H", "X-Forwarded-Host: evil.example", "-H", "X-Forwarded-Proto: https",
			"http://"+g.http+"/page")...)
		if res.StatusCode != 200 || body != gwPage("80", name) {
			t.Fatalf("curl -H 'Host: %s' http://%s/page: %s %q, want 200 %q", name, g.http, res.Status, body, gwPage("80", name))
		}
		for hdr, want := range map[string]string{"X-Seen-Host": name, "X-Seen-XFF": "127.0.0.1", "X-Seen-XFH": name, "X-Seen-XFP": "http"} {
			if got := res.Header.Get(hdr); got != want {
				t.Errorf("the device's site saw %s = %q, want %q", strings.Replace(hdr, "X-Seen-", "", 1), got, want)
			}
		}
		t.Logf("Host %s -> %s in %s; the site saw X-Forwarded-For %q, -Host %q, -Proto %q", name, res.Status,
			r.Elapsed.Round(time.Millisecond), res.Header.Get("X-Seen-XFF"), res.Header.Get("X-Seen-XFH"), res.Header.Get("X-Seen-XFP"))
	})

	t.Run("http/resolve", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(g.http)
		for _, name := range []string{w.web(80), strings.ToUpper(w.deviceID) + "." + strings.ToUpper(gwDomain)} {
			hostPort := name + ":" + port
			res, body, _ := gwCurl(t, append(gwDirect, "--resolve", hostPort+":127.0.0.1", "http://"+hostPort+"/")...)
			if res.StatusCode != 200 || !strings.EqualFold(body, gwPage("80", hostPort)) {
				t.Fatalf("curl --resolve %s:127.0.0.1 http://%s/: %s %q, want 200 %q", hostPort, hostPort, res.Status, body, gwPage("80", hostPort))
			}
			if got := res.Header.Get("X-Seen-XFH"); !strings.EqualFold(got, hostPort) {
				t.Errorf("X-Forwarded-Host %q, want %q", got, hostPort)
			}
		}
	})

	t.Run("http/port-8080", func(t *testing.T) {
		name := w.web(8080)
		res, body, _ := gwCurl(t, append(gwDirect, "-H", "Host: "+name, "http://"+g.http+"/")...)
		if res.StatusCode != 200 || body != gwPage("8080", name) {
			t.Fatalf("Host %s: %s %q, want 200 %q (the device's port 8080)", name, res.Status, body, gwPage("8080", name))
		}
	})

	t.Run("http/errors", func(t *testing.T) {
		unknown := tunnelID(t, t.TempDir())
		for _, c := range []struct {
			name, host string
			status     int
			text       string
			fast       bool // under a second
		}{
			{"unknown-device", unknown + "." + gwDomain, 502, "Device offline or unknown", true},
			{"private-port", w.web(22), 403, "This port is not public", false},
			{"unpublished-port", w.web(81), 502, "Port not published", false},
			{"host-outside-domain", "example.com", 400, "Unknown host", true},
			{"ip-literal-host", "127.0.0.1", 400, "Unknown host", true},
			{"bare-domain", gwDomain, 404, "No such device name", true},
			{"extra-label", "www." + w.web(80), 404, "No such device name", true},
		} {
			t.Run(c.name, func(t *testing.T) {
				for _, accept := range []string{"*/*", "text/html,application/xhtml+xml,*/*;q=0.8"} {
					res, body, r := gwCurl(t, append(gwDirect, "-H", "Host: "+c.host, "-H", "Accept: "+accept, "http://"+g.http+"/")...)
					if res.StatusCode != c.status || !strings.Contains(body, c.text) {
						t.Fatalf("Host %s (Accept %s): %s %q, want %d with %q", c.host, accept, res.Status, body, c.status, c.text)
					}
					html := strings.HasPrefix(accept, "text/html")
					if ct := res.Header.Get("Content-Type"); html != strings.HasPrefix(ct, "text/html") ||
						(html && !strings.Contains(body, "<title>"+strconv.Itoa(c.status))) || strings.Contains(body, "goroutine") {
						t.Fatalf("Host %s (Accept %s): Content-Type %q, body %q: want a small %s page", c.host, accept, ct, body,
							map[bool]string{true: "HTML", false: "text"}[html])
					}
					if c.fast && r.Elapsed > time.Second {
						t.Errorf("Host %s: answered in %s (curl included), want under 1s", c.host, r.Elapsed.Round(time.Millisecond))
					}
					if !html {
						t.Logf("Host %s -> %s in %s: %s", trimHost(c.host), res.Status, r.Elapsed.Round(time.Millisecond), strings.TrimSpace(body))
					}
				}
			})
		}
		// Never a forward proxy: an absolute URL or a CONNECT for another
		// host is refused, and no name is looked up.
		t.Run("forward-proxy", func(t *testing.T) {
			res, body, _ := gwCurl(t, "-x", "http://"+g.http, "http://example.com/")
			if res.StatusCode != 400 {
				t.Errorf("curl -x http://%s http://example.com/: %s %q, want 400", g.http, res.Status, body)
			}
			r := runCmd(30*time.Second, nil, nil, "curl", "-sS", "--max-time", "20", "-p", "-x", "http://"+g.http, "http://example.com/")
			if r.Code == 0 || !strings.Contains(string(r.Stderr), "CONNECT") {
				t.Errorf("curl -p -x http://%s (CONNECT example.com:80): want a failed CONNECT, got %s", g.http, r)
			}
			t.Logf("curl -p -x: exit %d: %s", r.Code, strings.TrimSpace(string(r.Stderr)))
		})
	})

	t.Run("https", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(g.https)
		for _, c := range []struct {
			name, site string
		}{{w.web(80), "80"}, {w.web(8080), "8080"}} {
			hostPort := c.name + ":" + port
			res, body, r := gwCurl(t, append(gwDirect, "--cacert", cert.ca, "--resolve", hostPort+":127.0.0.1", "https://"+hostPort+"/tls")...)
			if res.StatusCode != 200 || body != gwPage(c.site, hostPort) || res.Header.Get("X-Seen-XFP") != "https" {
				t.Fatalf("curl https://%s/: %s %q X-Forwarded-Proto %q, want 200 %q and https", hostPort, res.Status, body,
					res.Header.Get("X-Seen-XFP"), gwPage(c.site, hostPort))
			}
			t.Logf("https://%s/ (certificate for *.%s) -> %s in %s", trimHost(hostPort), gwDomain, res.Status, r.Elapsed.Round(time.Millisecond))
		}
		if n := g.proc.count("does not cover"); n != 0 {
			t.Errorf("the gateway warned that the *.%s certificate does not cover device names (%d lines)", gwDomain, n)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		name := w.web(8080)
		c, br := gwWSOpen(t, g.http, name)
		for i := range 2 {
			gwWSEcho(t, c, br, fmt.Sprintf("hello %d through the gateway %s", i, randName("")))
		}
		// A close handshake: the device echoes the close frame and hangs up.
		if err := gwWriteFrame(c, gwWSClose, []byte{0x03, 0xe8}, true); err != nil {
			t.Fatal(err)
		}
		if op, payload, _, err := gwReadFrame(br); err != nil || op != gwWSClose || !bytes.Equal(payload, []byte{0x03, 0xe8}) {
			t.Fatalf("close frame: op %#x payload % x err %v; want the close frame (1000) back", op, payload, err)
		}
		if rest, err := readAllTimeout(c, 10*time.Second); err != nil || len(rest) != 0 {
			t.Fatalf("after the close handshake: %q, %v; want EOF", rest, err)
		}
		t.Logf("WebSocket through http://%s (Host %s): upgrade, 2 masked text frames echoed, close handshake", g.http, trimHost(name))
	})

	t.Run("limits", func(t *testing.T) {
		lg := startGWGateway(t, w, gwOpts{name: "gateway-limited", socks: true, http: true, from: "127.0.0.9",
			extra: []string{"--rate-conn", "5", "--max-streams", "4"}})
		listening := gwLogLines(lg.proc, func(m map[string]any) bool { return m["message"] == "gateway listening" })
		if len(listening) != 1 || fmt.Sprint(listening[0]["rate_conn"]) != "5" || fmt.Sprint(listening[0]["burst"]) != "10" ||
			fmt.Sprint(listening[0]["max_streams"]) != "4" {
			t.Errorf("gateway listening line: %s; want rate_conn 5, burst 10, max_streams 4", gwRaw(listening))
		}
		t.Run("max-streams", func(t *testing.T) { gwCheckStreamCap(t, w, lg, "127.0.0.3") })
		t.Run("rate", func(t *testing.T) { gwCheckRate(t, w, lg, "127.0.0.1", "127.0.0.2") })
	})

	t.Run("no-dns", func(t *testing.T) {
		if dns == nil {
			t.Skip("127.0.0.1:53 was taken; nothing to check")
		}
		// The control: a lookup under the same wrapper reaches the watch.
		probe := randName("tunnel-e2e-dns-probe-") + ".test"
		r := runCmd(15*time.Second, nil, nil, wrap[0], append(append([]string{}, wrap[1:]...), "getent", "hosts", probe)...)
		if !slices.Contains(dns.asked(), probe) {
			t.Skipf("a lookup of %s under the loopback-only resolver never reached 127.0.0.1:53 (%s); the watch is blind here", probe, r)
		}
		// Only the gateway is pointed at 127.0.0.1:53, but on a machine
		// whose own resolver is 127.0.0.1 other programs may ask too: fail
		// on the names clients sent to the gateway, report the rest.
		var sent, others []string
		for _, name := range dns.asked() {
			n := strings.ToLower(strings.TrimSuffix(name, "."))
			if n == probe {
				continue
			}
			if strings.Contains(n, "example") || n == "localhost" || n == gwDomain || strings.HasSuffix(n, "."+gwDomain) ||
				strings.HasSuffix(n, ".tunnel") {
				sent = append(sent, name)
			} else {
				others = append(others, name)
			}
		}
		if len(others) > 0 {
			t.Logf("DNS queries on 127.0.0.1:53 for other names (not necessarily the gateway's): %q", others)
		}
		if len(sent) > 0 {
			t.Fatalf("the gateway sent DNS queries for %q; it must never resolve a name a client sent", sent)
		}
		t.Logf("no DNS query from the gateway reached 127.0.0.1:53, its only resolver, after example.com over SOCKS, HTTP Host "+
			"and forward-proxy requests (the control lookup of %s did, in %s)", probe, r.Elapsed.Round(time.Millisecond))
	})

	t.Run("sigterm", func(t *testing.T) {
		// Open streams of every kind must not keep the gateway from exiting.
		rep, err := socksConnect(g.socks, host, gwEchoPort)
		if err != nil || rep.Code != repSucceeded {
			t.Fatalf("CONNECT %s:%d: %v %s", host, gwEchoPort, err, replyName(rep.Code))
		}
		defer rep.Conn.Close()
		if err := gwEchoLine(rep.Conn, "before SIGTERM\n"); err != nil {
			t.Fatal(err)
		}
		ws, br := gwWSOpen(t, g.http, w.web(8080))
		gwWSEcho(t, ws, br, "before SIGTERM")
		code, took, err := g.proc.stop(syscall.SIGTERM, stopTimeout)
		if err != nil {
			t.Fatal(err)
		}
		if code != 0 {
			t.Fatalf("gateway after SIGTERM with open streams: %s in %s, want exit status 0", g.proc.exitDesc(), took.Round(time.Millisecond))
		}
		if !strings.Contains(g.proc.log(), `"gateway stopped"`) {
			t.Errorf("the gateway exited without logging %q", "gateway stopped")
		}
		// Its clients see their streams end rather than hang.
		for name, c := range map[string]net.Conn{"SOCKS stream": rep.Conn, "WebSocket": ws} {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
				t.Errorf("%s still open 5s after the gateway exited", name)
			}
		}
		t.Logf("gateway exited 0 in %s after SIGTERM with a SOCKS stream and a WebSocket open", took.Round(time.Millisecond))
	})

	if !t.Failed() {
		t.Logf("TestGateway: %s in all", time.Since(start).Round(time.Millisecond))
	}
}

// gwCheckStreamCap: with --max-streams 4, a source holding 4 streams gets
// 0x02 and 429 for more, and gets through again once it closes one.
func gwCheckStreamCap(t *testing.T, w *gwWorld, lg *gwGateway, from string) {
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range 4 {
		rep, err := gwSocksFrom(from, lg.socks, atypDomain, w.host(), gwEchoPort)
		if err != nil || rep.Code != repSucceeded {
			t.Fatalf("stream %d of 4 from %s: %v %s, want 0x00", i+1, from, err, replyName(rep.Code))
		}
		held = append(held, rep.Conn)
		if err := gwEchoLine(rep.Conn, fmt.Sprintf("held %d\n", i)); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := gwSocksFrom(from, lg.socks, atypDomain, w.host(), gwEchoPort)
	if rep.Conn != nil {
		rep.Conn.Close()
	}
	if err != nil || rep.Code != repNotAllowed || rep.Elapsed > time.Second {
		t.Fatalf("a 5th stream from %s while it holds 4: %v %s in %s, want 0x02 under 1s", from, err, replyName(rep.Code), rep.Elapsed)
	}
	hc := gwHTTPClient(from, 1)
	defer hc.CloseIdleConnections()
	res, body, err := gwGet(hc, lg.http, w.web(80), "/over-the-cap")
	if err != nil {
		t.Fatal(err)
	}
	if ra, _ := strconv.Atoi(res.Header.Get("Retry-After")); res.StatusCode != http.StatusTooManyRequests || ra < 1 {
		t.Fatalf("an HTTP request from %s while it holds 4 streams: %s Retry-After %q %q, want 429 with Retry-After",
			from, res.Status, res.Header.Get("Retry-After"), body)
	}
	t.Logf("%s holding 4 streams: a 5th CONNECT -> %s in %s; GET -> %s, Retry-After %s", from, replyName(rep.Code),
		rep.Elapsed.Round(time.Millisecond), res.Status, res.Header.Get("Retry-After"))
	held[0].Close()
	held = held[1:]
	took, err := gwWaitReachable(from, lg.socks, w.host(), gwEchoPort, 5*time.Second)
	if err != nil {
		t.Fatalf("after closing one of its 4 streams, %s: %v", from, err)
	}
	t.Logf("%s closed one stream: the next CONNECT succeeded after %s", from, took.Round(time.Millisecond))
	if lines := gwRateLines(lg.proc, from); len(lines) == 0 {
		t.Errorf("the gateway logged no refusal of %s", from)
	}
}

// gwCheckRate hammers the limited gateway from one source with bounded
// concurrency (4 HTTP and 4 SOCKS workers, 2 s): some requests get 429 and
// 0x02, the gateway logs it (once), and another source gets through
// meanwhile.
func gwCheckRate(t *testing.T, w *gwWorld, lg *gwGateway, from, other string) {
	const (
		workers = 4
		hammer  = 2 * time.Second
		pace    = 20 * time.Millisecond
		maxEach = 100 // requests per worker, whatever the clock says
	)
	var (
		mu        sync.Mutex
		httpCodes = map[int]int{}
		socksCode = map[byte]int{}
		problems  []string
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		mu.Unlock()
	}
	refused := make(chan struct{})
	var refusedOnce sync.Once
	client := gwHTTPClient(from, workers) // keep its connections within --max-streams
	defer client.CloseIdleConnections()
	start := time.Now()
	stop := start.Add(hammer)
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for n := 0; n < maxEach && time.Now().Before(stop); n++ {
				res, body, err := gwGet(client, lg.http, w.web(80), fmt.Sprintf("/hammer/%d/%d", i, n))
				switch {
				case err != nil:
					problem("HTTP: %v", err)
				case res.StatusCode == http.StatusTooManyRequests:
					if ra, _ := strconv.Atoi(res.Header.Get("Retry-After")); ra < 1 || !strings.Contains(body, "Too many requests") {
						problem("429 with Retry-After %q and body %q", res.Header.Get("Retry-After"), body)
					}
					refusedOnce.Do(func() { close(refused) })
				case res.StatusCode == http.StatusOK:
					if body != gwPage("80", w.web(80)) {
						problem("HTTP 200 with body %q", body)
					}
				default:
					problem("HTTP %s %q", res.Status, body)
				}
				if res != nil {
					mu.Lock()
					httpCodes[res.StatusCode]++
					mu.Unlock()
				}
				time.Sleep(pace)
			}
		})
		wg.Go(func() {
			for n := 0; n < maxEach && time.Now().Before(stop); n++ {
				rep, err := gwSocksFrom(from, lg.socks, atypDomain, w.host(), gwEchoPort)
				switch {
				case err != nil:
					problem("SOCKS: %v", err)
				case rep.Code == repSucceeded:
					if err := gwEchoLine(rep.Conn, fmt.Sprintf("hammer %d %d\n", i, n)); err != nil {
						problem("SOCKS %v", err)
					}
					rep.Conn.Close()
				case rep.Code == repNotAllowed:
					refusedOnce.Do(func() { close(refused) })
				default:
					problem("SOCKS reply %s", replyName(rep.Code))
				}
				if err == nil {
					mu.Lock()
					socksCode[rep.Code]++
					mu.Unlock()
				}
				time.Sleep(pace)
			}
		})
	}

	// Meanwhile, from another source: both fronts answer.
	select {
	case <-refused:
	case <-time.After(hammer):
	}
	oc := gwHTTPClient(other, 1)
	defer oc.CloseIdleConnections()
	res, body, err := gwGet(oc, lg.http, w.web(80), "/other-source")
	if err != nil || res.StatusCode != 200 || body != gwPage("80", w.web(80)) {
		t.Errorf("GET from %s while %s is being refused: %v %v %q, want 200", other, from, err, res, body)
	}
	rep, err := gwSocksFrom(other, lg.socks, atypDomain, w.host(), gwEchoPort)
	if err != nil || rep.Code != repSucceeded {
		t.Errorf("CONNECT from %s while %s is being refused: %v %s, want 0x00", other, from, err, replyName(rep.Code))
	} else {
		if err := gwEchoLine(rep.Conn, "from another source\n"); err != nil {
			t.Error(err)
		}
		rep.Conn.Close()
	}
	meanwhile := time.Now().Before(stop)
	wg.Wait()
	elapsed := time.Since(start)

	t.Logf("%s for %s: HTTP %v, SOCKS %v (reply codes); %s got through meanwhile (hammer still running: %v)",
		from, elapsed.Round(time.Millisecond), httpCodes, socksCode, other, meanwhile)
	for _, p := range problems {
		t.Errorf("%s: %s", from, p)
	}
	if !meanwhile {
		t.Errorf("the requests from %s ended after the hammer stopped; not a check of 'meanwhile'", other)
	}
	if httpCodes[429] == 0 || socksCode[repNotAllowed] == 0 {
		t.Errorf("over the budget: %d HTTP 429 and %d SOCKS 0x02, want some of each", httpCodes[429], socksCode[repNotAllowed])
	}
	// Burst 10, then 5 per second, shared by both fronts (+2 for rounding).
	admitted := httpCodes[200] + socksCode[repSucceeded]
	if limit := 10 + int(5*elapsed.Seconds()) + 2; admitted == 0 || admitted > limit {
		t.Errorf("%d requests of %s admitted in %s; want between 1 and %d (burst 10, 5/s)", admitted, from, elapsed.Round(time.Millisecond), limit)
	}
	// One line per source per 10 s, however many refusals.
	lines := gwRateLines(lg.proc, from)
	refusals := httpCodes[429] + socksCode[repNotAllowed]
	if len(lines) < 1 || len(lines) > 2 {
		t.Errorf("the gateway logged %d lines for %d refusals of %s, want 1 (at most one per 10 s):\n%s", len(lines), refusals, from, gwRaw(lines))
	} else {
		t.Logf("gateway log for %d refusals of %s: %s", refusals, from, strings.TrimSpace(gwRaw(lines)))
	}
	if lines := gwRateLines(lg.proc, other); len(lines) > 0 {
		t.Errorf("the gateway refused %s, which stayed within its budget:\n%s", other, gwRaw(lines))
	}
}

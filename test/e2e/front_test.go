//go:build linux

package e2e

// Every client's dialect at socksd's front door: plain forward-proxy
// requests (curl -x, wget with http_proxy), SOCKS4a and SOCKS4 answered at
// once, and `tunnel status` saying when a peer was last heard from.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestCurlForwardProxy(t *testing.T) {
	e := getEnv(t)
	url := "http://" + e.host() + ":8080/e2e"
	r := runCmd(40*time.Second, nil, nil, "curl", "-sS", "--max-time", "30", "-x", "http://"+e.socksAddr, "-D", "-", url)
	if r.Code != 0 {
		t.Fatalf("curl -x http://%s %s: %s", e.socksAddr, url, r)
	}
	out := strings.ReplaceAll(string(r.Stdout), "\r\n", "\n")
	head, body, _ := strings.Cut(out, "\n\n")
	want := e.host() + ":8080"
	if !strings.HasPrefix(head, "HTTP/1.1 200") || body != httpBody(want) || !strings.Contains(head, "X-Seen-Host: "+want) {
		t.Fatalf("curl -x %s: head\n%s\nbody %q; want 200 and %q", url, head, body, httpBody(want))
	}
	t.Logf("curl -x ok in %s", r.Elapsed.Round(time.Millisecond))

	// Never an open proxy: a host that is not .tunnel is refused, and
	// nothing is fetched.
	r = runCmd(40*time.Second, nil, nil, "curl", "-sS", "--max-time", "30", "-x", "http://"+e.socksAddr,
		"-o", "/dev/null", "-w", "%{http_code}", fmt.Sprintf("http://127.0.0.1:%d/", e.http.port))
	if strings.TrimSpace(string(r.Stdout)) != "403" {
		t.Fatalf("curl -x for a host not .tunnel: %s; want 403", r)
	}
}

func TestWgetHTTPProxy(t *testing.T) {
	if _, err := exec.LookPath("wget"); err != nil {
		if os.Geteuid() != 0 {
			t.Skip("wget not installed (make deps installs it as root)")
		}
		t.Fatal("wget not installed: run make deps")
	}
	e := getEnv(t)
	url := "http://" + e.host() + ":8080/e2e"
	r := runCmd(40*time.Second, []string{"http_proxy=http://" + e.socksAddr}, nil,
		"wget", "-q", "-O", "-", "--timeout=30", "--tries=1", url)
	if r.Code != 0 || string(r.Stdout) != httpBody(e.host()+":8080") {
		t.Fatalf("wget %s with http_proxy=http://%s: %s; want %q", url, e.socksAddr, r, httpBody(e.host()+":8080"))
	}
	t.Logf("wget ok in %s", r.Elapsed.Round(time.Millisecond))
}

// socks4Ask sends a SOCKS4 request (4a when host is set) and returns the
// connection, the reply code and how long it took.
func socks4Ask(t *testing.T, proxy string, ip [4]byte, host string, port uint16) (net.Conn, byte, time.Duration) {
	t.Helper()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	req := []byte{4, 1, 0, 0}
	binary.BigEndian.PutUint16(req[2:], port)
	req = append(req, ip[:]...)
	req = append(req, "e2e\x00"...)
	if host != "" {
		req = append(append(req, host...), 0)
	}
	start := time.Now()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var reply [8]byte
	if _, err := io.ReadFull(c, reply[:]); err != nil {
		t.Fatalf("socks4 reply: %v after %s", err, time.Since(start))
	}
	if reply[0] != 0 {
		t.Fatalf("socks4 reply % x: version byte not 0", reply)
	}
	return c, reply[1], time.Since(start)
}

func TestSOCKS4aAnswersAtOnce(t *testing.T) {
	e := getEnv(t)
	// Served: 4a carries the name.
	c, code, took := socks4Ask(t, e.socksAddr, [4]byte{0, 0, 0, 1}, e.host(), 8080)
	if code != 0x5a || took > time.Second {
		t.Fatalf("socks4a to %s:8080: reply %#02x in %s; want 0x5a well under a second", e.host(), code, took)
	}
	io.WriteString(c, "GET /e2e HTTP/1.0\r\nHost: "+e.host()+":8080\r\n\r\n")
	resp, _ := io.ReadAll(c)
	if !strings.HasSuffix(string(resp), httpBody(e.host()+":8080")) {
		t.Fatalf("through socks4a: %q", resp)
	}
	t.Logf("socks4a granted in %s", took.Round(time.Microsecond))

	// Refused: SOCKS4 with an IP can name no .tunnel host.
	_, code, took = socks4Ask(t, e.socksAddr, [4]byte{127, 0, 0, 1}, "", 8080)
	if code != 0x5b || took > time.Second {
		t.Fatalf("socks4 to 127.0.0.1: reply %#02x in %s; want 0x5b well under a second", code, took)
	}
	t.Logf("socks4 to an IP refused in %s", took.Round(time.Microsecond))

	// curl's own SOCKS4a client gets the page.
	r := runCmd(40*time.Second, nil, nil, "curl", "-sS", "--max-time", "30", "--socks4a", e.socksAddr, "http://"+e.host()+":8080/e2e")
	if r.Code != 0 || string(r.Stdout) != httpBody(e.host()+":8080") {
		t.Fatalf("curl --socks4a: %s", r)
	}
}

func TestStatusLastRx(t *testing.T) {
	e := getEnv(t)
	// Traffic first, so that socksd has a peer.
	r := runCmd(40*time.Second, nil, nil, "curl", "-sS", "--max-time", "30", "-x", "http://"+e.socksAddr, "http://"+e.host()+":8080/e2e")
	if r.Code != 0 {
		t.Fatalf("curl: %s", r)
	}
	r = runTunnel(10*time.Second, nil, "--home", e.socksHome, "status")
	if r.Code != 0 || !strings.Contains(string(r.Stdout), "LAST RX") {
		t.Fatalf("tunnel status: %s; want a LAST RX column", r)
	}
	var line string
	for l := range strings.SplitSeq(string(r.Stdout), "\n") {
		if strings.Contains(l, e.deviceID) && strings.Contains(l, "s ago") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("tunnel status: no line for %s saying when it was last heard from:\n%s", e.deviceID, r.Stdout)
	}
	t.Logf("%s", strings.TrimSpace(line))

	r = runTunnel(10*time.Second, nil, "--home", e.socksHome, "status", "--json")
	var docs []struct {
		Peers []struct {
			ID       string   `json:"id"`
			LastRxms *float64 `json:"last_rx_ms"`
			Packets  string   `json:"packets"`
		} `json:"peers"`
	}
	if err := json.Unmarshal(r.Stdout, &docs); err != nil {
		t.Fatalf("tunnel status --json: %v: %s", err, r)
	}
	for _, d := range docs {
		for _, p := range d.Peers {
			if p.ID == e.deviceID {
				if p.LastRxms == nil || *p.LastRxms < 0 || *p.LastRxms > 60_000 {
					t.Fatalf("last_rx_ms of %s: %v; want a recent time", p.ID, p.LastRxms)
				}
				// Loopback carries 1400-byte packets whole, and the size
				// probes went with the request.
				if p.Packets != "whole" {
					t.Fatalf("packets of %s: %q, want whole", p.ID, p.Packets)
				}
				return
			}
		}
	}
	t.Fatalf("tunnel status --json: no peer %s: %s", e.deviceID, r.Stdout)
}

//go:build linux

package e2e

// curl through socksd to an HTTP server the test runs, published as
// `-public 127.0.0.1:HTTPPORT:8080`.

import (
	"strings"
	"testing"
	"time"
)

func TestCurlSocks5Hostname(t *testing.T) {
	e := getEnv(t)
	url := "http://" + e.host() + ":8080/e2e"
	r := runCmd(40*time.Second, nil, nil, "curl", "-sS", "--max-time", "30",
		"--socks5-hostname", e.socksAddr, "-D", "-", url)
	if r.Code != 0 {
		t.Fatalf("curl --socks5-hostname %s %s: %s", e.socksAddr, url, r)
	}
	out := strings.ReplaceAll(string(r.Stdout), "\r\n", "\n")
	head, body, _ := strings.Cut(out, "\n\n")
	wantHost := e.host() + ":8080"
	if body != httpBody(wantHost) {
		t.Errorf("body %q, want %q (the Host header the server saw is in it)", body, httpBody(wantHost))
	}
	if !strings.Contains(head, "X-Seen-Host: "+wantHost) {
		t.Errorf("server saw another Host header than %q; response head:\n%s", wantHost, head)
	}
	if !strings.HasPrefix(head, "HTTP/1.1 200") {
		t.Errorf("status line: %q", strings.SplitN(head, "\n", 2)[0])
	}
	t.Logf("curl ok in %s", r.Elapsed.Round(time.Millisecond))
}

// TestCurlLocalResolutionFails: plain --socks5 makes curl resolve the name
// itself, which must fail cleanly (non-zero exit, no hang). curl runs with
// a loopback-only resolver (see isolate_test.go).
func TestCurlLocalResolutionFails(t *testing.T) {
	e := getEnv(t)
	wrap := loopbackDNSWrapper(t)
	url := "http://" + e.host() + ":8080/"
	r := runCmd(30*time.Second, nil, nil, wrap[0], append(wrap[1:],
		"curl", "-sS", "--max-time", "20", "--socks5", e.socksAddr, url)...)
	t.Logf("curl --socks5 (local resolution): %s", r)
	if r.Code == 0 {
		t.Fatalf("curl --socks5 %s succeeded; local resolution of a .tunnel name should fail", url)
	}
	if r.TimedOut || r.Code == 28 || r.Elapsed > 15*time.Second {
		t.Fatalf("curl --socks5 did not fail cleanly (hung or timed out): %s", r)
	}
	if r.Code == 111 {
		t.Fatalf("mount --bind failed: %s", r)
	}
}

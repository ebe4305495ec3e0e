//go:build linux

package e2e

// --metrics end to end: a rendezvous node, a device with a real sshd and a
// web site, a socksd and a public gateway, each serving /metrics; after real
// traffic (an ssh session and an HTTP request that succeed, a denied port,
// a port not published, an unknown device, a gateway client over its rate)
// every named series moved as it should.

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// scrape reads http://addr/metrics into "name{labels}" → value, labels
// as Prometheus prints them (sorted by name).
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}
	res, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", addr, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("scrape %s: %d, %v", addr, res.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("scrape %s: bad line %q", addr, line)
		}
		out[line[:i]] = v
	}
	return out
}

// series names a sample: series("x", "b", "2", "a", "1") is x{a="1",b="2"}.
func series(name string, kv ...string) string {
	if len(kv) == 0 {
		return name
	}
	var pairs []string
	for i := 0; i < len(kv); i += 2 {
		pairs = append(pairs, fmt.Sprintf("%s=%q", kv[i], kv[i+1]))
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

type want struct {
	series string
	check  func(float64) bool
	what   string
}

func atLeast(n float64) func(float64) bool { return func(v float64) bool { return v >= n } }
func exactly(n float64) func(float64) bool { return func(v float64) bool { return v == n } }

// checkSeries checks wants against got, and that no series names any of
// forbidden (IDs, addresses): labels have bounded values.
func checkSeries(t *testing.T, role string, got map[string]float64, wants []want, forbidden ...string) {
	t.Helper()
	for _, w := range wants {
		v, ok := got[w.series]
		if !ok {
			t.Errorf("%s: %s missing", role, w.series)
			continue
		}
		if !w.check(v) {
			t.Errorf("%s: %s = %v, want %s", role, w.series, v, w.what)
		}
	}
	for k := range got {
		for _, f := range forbidden {
			if strings.Contains(k, f) {
				t.Errorf("%s: series %s holds %q", role, k, f)
			}
		}
	}
}

func TestMetrics(t *testing.T) {
	requireSystem(t)
	sshd, err := startSSHD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sshd.stop)
	site, err := startHTTPServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(site.close)
	closed, err := closedPort()
	if err != nil {
		t.Fatal(err)
	}

	relay := addr(freePort(t, "udp"))
	relayMetrics := addr(freePort(t, "tcp"))
	startTunnel(t, "relay", t.TempDir(), nil, "relay", "--listen", relay, "--metrics", relayMetrics)

	devHome := t.TempDir()
	deviceID := tunnelID(t, devHome)
	someone := tunnelID(t, t.TempDir())
	devMetrics := addr(freePort(t, "tcp"))
	device := startTunnel(t, "publish", devHome, nil, "publish", "--relay", relay, "--metrics", devMetrics,
		"-public", fmt.Sprintf("127.0.0.1:%d:22", sshd.port),
		"-private", fmt.Sprintf("127.0.0.1:%d:2200,%s", sshd.port, someone),
		"-public", fmt.Sprintf("127.0.0.1:%d:80", site.port),
		"-public", fmt.Sprintf("127.0.0.1:%d:9", closed))
	if !device.waitLog("registered with relay", 1, 20*time.Second) {
		t.Fatal("the device never registered")
	}

	socks := addr(freePort(t, "tcp"))
	socksMetrics := addr(freePort(t, "tcp"))
	socksd := startTunnel(t, "socksd", t.TempDir(), nil, "socksd", "--relay", relay, "--listen", socks, "--metrics", socksMetrics)
	if err := waitTCP(socks, 15*time.Second, socksd); err != nil {
		t.Fatal(err)
	}
	gwHTTP := addr(freePort(t, "tcp"))
	gwMetrics := addr(freePort(t, "tcp"))
	gw := startTunnel(t, "gateway", t.TempDir(), nil, "gateway", "--relay", relay, "--http", gwHTTP, "--domain", "gw.test",
		"--rate-conn", "1", "--metrics", gwMetrics)
	if !gw.waitLog("registered with relay", 1, 20*time.Second) {
		t.Fatal("the gateway never registered")
	}

	// Before any traffic every role answers, its limits at zero.
	if v := scrape(t, relayMetrics)[series("tunnel_relay_devices")]; v != 1 {
		t.Fatalf("tunnel_relay_devices %v before traffic, want 1", v)
	}

	// Through socksd: an ssh session (ok), a private port (denied), a port
	// not published, a refused one, an unknown device.
	host := deviceID + ".tunnel"
	if err := sshd.checkEcho(30*time.Second, nil, ncProxy(socks), host, "metrics"); err != nil {
		t.Fatal(err)
	}
	stranger := tunnelID(t, t.TempDir())
	for _, target := range []string{host + ":2200", host + ":23", host + ":9", stranger + ".tunnel:22"} {
		r := runCmd(20*time.Second, nil, nil, "curl", "-sS", "--max-time", "10", "--socks5-hostname", socks, "http://"+target+"/")
		if r.Code == 0 {
			t.Fatalf("curl to %s through socksd succeeded: %s", target, r)
		}
	}

	// Through the gateway: a page (200), an unknown device (502), then a
	// burst over --rate-conn 1 (429).
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	get := func(hostname string) int {
		req, _ := http.NewRequest("GET", "http://"+gwHTTP+"/", nil)
		req.Host = hostname
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s via the gateway: %v", hostname, err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	waitOK := time.Now().Add(20 * time.Second)
	for get(deviceID+".gw.test") != 200 {
		if time.Now().After(waitOK) {
			t.Fatal("the device's site never answered 200 through the gateway")
		}
		time.Sleep(time.Second) // a token back each second
	}
	time.Sleep(time.Second)
	if code := get(stranger + ".gw.test"); code != 502 {
		t.Fatalf("unknown device via the gateway: %d, want 502", code)
	}
	limited := 0
	for range 8 {
		if get(deviceID+".gw.test") == 429 {
			limited++
		}
	}
	if limited == 0 {
		t.Fatal("8 requests at once over --rate-conn 1: none got 429")
	}

	// A device counts an ended stream when its splice ends; socksd and the
	// gateway when they close theirs: give them a moment.
	deadline := time.Now().Add(10 * time.Second)
	for scrape(t, devMetrics)[series("tunnel_streams_total", "side", "device", "outcome", "ok")] < 2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}

	forbidden := []string{deviceID, deviceID[:8], stranger, someone, "127.0.0.1"}
	checkSeries(t, "relay", scrape(t, relayMetrics), []want{
		{series("tunnel_relay_devices"), exactly(1), "1 (the device; socksd and the gateway do not publish)"},
		{series("tunnel_relay_lookups_total", "result", "found"), atLeast(2), ">= 2 (socksd and the gateway found the device)"},
		{series("tunnel_relay_lookups_total", "result", "not_found"), atLeast(2), ">= 2 (the unknown device, from each)"},
		{series("tunnel_relay_lookups_total", "result", "busy"), exactly(0), "0"},
		{series("tunnel_relay_forwarded_bytes_total"), atLeast(1), "> 0 (streams start relayed)"},
		{series("tunnel_registry_errors_total"), exactly(0), "0 (presence in memory)"},
		{series("tunnel_limited_total", "what", "relay_lookup_rate"), exactly(0), "0"},
		{series("go_goroutines"), atLeast(1), "> 0 (Go collector)"},
		{series("process_resident_memory_bytes"), atLeast(1), "> 0 (process collector)"},
	}, forbidden...)
	checkSeries(t, "device", scrape(t, devMetrics), []want{
		{series("tunnel_streams_total", "side", "device", "outcome", "ok"), atLeast(2), ">= 2 (ssh, the page)"},
		{series("tunnel_streams_total", "side", "device", "outcome", "denied"), exactly(1), "1 (port 2200)"},
		{series("tunnel_streams_total", "side", "device", "outcome", "not_published"), exactly(1), "1 (port 23)"},
		{series("tunnel_streams_total", "side", "device", "outcome", "refused"), exactly(1), "1 (port 9)"},
		{series("tunnel_streams_total", "side", "device", "outcome", "aborted"), exactly(0), "0"},
		{series("tunnel_stream_bytes_total", "side", "device", "direction", "up"), atLeast(1000), ">= 1000 (an ssh login)"},
		{series("tunnel_stream_bytes_total", "side", "device", "direction", "down"), atLeast(1000), ">= 1000"},
		{series("tunnel_limited_total", "what", "device_unauthorized"), exactly(0), "0"},
	}, forbidden...)
	dev := scrape(t, devMetrics)
	if p := dev[series("tunnel_peers", "path", "direct")] + dev[series("tunnel_peers", "path", "relayed")]; p != 2 {
		t.Errorf("device: tunnel_peers direct+relayed = %v, want 2 (socksd and the gateway)", p)
	}
	checkSeries(t, "socksd", scrape(t, socksMetrics), []want{
		{series("tunnel_streams_total", "side", "client", "outcome", "ok"), exactly(1), "1 (the ssh session)"},
		{series("tunnel_streams_total", "side", "client", "outcome", "denied"), exactly(1), "1"},
		{series("tunnel_streams_total", "side", "client", "outcome", "not_published"), exactly(1), "1"},
		{series("tunnel_streams_total", "side", "client", "outcome", "refused"), exactly(1), "1"},
		{series("tunnel_streams_total", "side", "client", "outcome", "offline"), exactly(1), "1 (the unknown device)"},
		{series("tunnel_stream_bytes_total", "side", "client", "direction", "up"), atLeast(1000), ">= 1000"},
		{series("tunnel_stream_bytes_total", "side", "client", "direction", "down"), atLeast(1000), ">= 1000"},
		{series("tunnel_peers", "path", "relayed"), func(v float64) bool { return v <= 1 }, "<= 1"},
		{series("tunnel_limited_total", "what", "socks_preauth_source"), exactly(0), "0"},
	}, forbidden...)
	checkSeries(t, "gateway", scrape(t, gwMetrics), []want{
		{series("tunnel_gateway_requests_total", "code", "200"), atLeast(1), ">= 1"},
		{series("tunnel_gateway_requests_total", "code", "502"), exactly(1), "1 (the unknown device)"},
		{series("tunnel_gateway_requests_total", "code", "429"), exactly(float64(limited)), fmt.Sprint(limited, " (the requests that got 429)")},
		{series("tunnel_limited_total", "what", "gateway_rate"), exactly(float64(limited)), fmt.Sprint(limited)},
		{series("tunnel_streams_total", "side", "client", "outcome", "ok"), atLeast(1), ">= 1"},
		{series("tunnel_streams_total", "side", "client", "outcome", "offline"), exactly(1), "1"},
	}, forbidden...)
}

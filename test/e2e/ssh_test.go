//go:build linux

package e2e

// ssh to <id>.tunnel the ways a user would: through OpenBSD nc as a SOCKS5
// client, and through `tunnel connect` as the ProxyCommand.

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSSHThroughNetcat(t *testing.T) {
	e := getEnv(t)
	start := time.Now()
	if err := e.sshd.checkEcho(30*time.Second, nil, e.ncProxy(), e.host(), "hello"); err != nil {
		t.Fatal(err)
	}
	tunneled := time.Since(start)
	// Baseline: the same login without the tunnel.
	direct := e.sshd.sshDirect(30*time.Second, "echo hello")
	t.Logf("ssh echo hello: %s through the tunnel, %s direct (code %d)",
		tunneled.Round(time.Millisecond), direct.Elapsed.Round(time.Millisecond), direct.Code)
	// ssh lowercases %h itself, so this mostly proves nothing breaks on the
	// way; the raw SOCKS test below sends the upper-case name as is.
	if err := e.sshd.checkEcho(30*time.Second, nil, e.ncProxy(), strings.ToUpper(e.host()), "hello-upper"); err != nil {
		t.Fatal(err)
	}
}

func TestSOCKSUpperCaseName(t *testing.T) {
	e := getEnv(t)
	for _, host := range []string{
		strings.ToUpper(e.deviceID) + ".TUNNEL",
		strings.ToUpper(e.deviceID[:26]) + e.deviceID[26:] + ".Tunnel",
		e.deviceID + ".tunnel.", // trailing dot: a fully qualified name
	} {
		rep, err := socksConnect(e.socksAddr, host, 22)
		if err != nil {
			t.Fatalf("CONNECT %s:22: %v", host, err)
		}
		if rep.Code != repSucceeded {
			t.Fatalf("CONNECT %s:22: reply %s, want 0x00", host, replyName(rep.Code))
		}
		banner, err := readLine(rep.Conn, 10*time.Second)
		rep.Conn.Close()
		if err != nil || !strings.HasPrefix(banner, "SSH-2.0-") {
			t.Fatalf("CONNECT %s:22: want an SSH banner, got %q (%v)", host, banner, err)
		}
		t.Logf("CONNECT %s:22 -> 0x00 in %s, banner %q", host, rep.Elapsed.Round(time.Millisecond), strings.TrimSpace(banner))
	}
}

func TestSSHThroughTunnelConnect(t *testing.T) {
	e := getEnv(t)
	cases := []struct {
		name  string
		proxy string
		env   []string
	}{
		{"socks", tunnelBin + " connect --socks " + e.socksAddr + " %h %p", nil},
		{"relay", tunnelBin + " --home " + t.TempDir() + " connect --relay " + e.relayAddr + " %h %p", nil},
		{"TUNNEL_RELAY", tunnelBin + " connect %h %p", []string{"TUNNEL_RELAY=" + e.relayAddr, "TUNNEL_HOME=" + t.TempDir()}},
		// No --socks, no --relay: the socksd running with this home, over
		// its control socket; it goes before TUNNEL_RELAY (a dead one here).
		{"running-socksd", tunnelBin + " --home " + e.socksHome + " connect %h %p", []string{"TUNNEL_RELAY=127.0.0.1:9"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			word := "hello-" + strings.ToLower(strings.ReplaceAll(c.name, "_", "-"))
			r := e.sshd.ssh(40*time.Second, c.env, nil, c.proxy, e.host(), "echo "+word)
			if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != word {
				t.Fatalf("ssh -o ProxyCommand=%q (env %v): want %q, got %s", c.proxy, c.env, word, r)
			}
			// ssh's stderr carries the ProxyCommand's stderr: `tunnel
			// connect` must be quiet when all is well.
			if s := strings.TrimSpace(string(r.Stderr)); s != "" {
				t.Errorf("stderr not quiet on success (ProxyCommand %q):\n%s", c.proxy, tail(s, 30, 4<<10))
			}
			t.Logf("ok in %s", r.Elapsed.Round(time.Millisecond))
		})
	}
}

func TestSSHConcurrentSessions(t *testing.T) {
	e := getEnv(t)
	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	took := make([]time.Duration, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			r := e.sshd.ssh(90*time.Second, nil, nil, e.ncProxy(), e.host(), fmt.Sprintf("echo $((%d*%d))", i, i))
			took[i] = r.Elapsed
			if want := fmt.Sprint(i * i); r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != want {
				errs[i] = fmt.Errorf("session %d: want %q, got %s", i, want, r)
			}
		}(i)
	}
	wg.Wait()
	failed := 0
	var slowest time.Duration
	for i, err := range errs {
		if err != nil {
			failed++
			t.Error(err)
		}
		slowest = max(slowest, took[i])
	}
	t.Logf("%d concurrent ssh sessions: %d failed, wall %s, slowest %s", n, failed, time.Since(start).Round(time.Millisecond), slowest.Round(time.Millisecond))
}

// TestTunnelConnectNoWay: with no socksd running with the home and no
// rendezvous node given, `tunnel connect` says what to do, at once.
func TestTunnelConnectNoWay(t *testing.T) {
	e := getEnv(t)
	r := runTunnel(20*time.Second, []string{"TUNNEL_RELAY="}, "--home", t.TempDir(), "connect", e.host(), "22")
	msg := strings.TrimSpace(string(r.Stderr))
	if r.Code != 1 || !strings.Contains(msg, "no socksd is running with home") || !strings.Contains(msg, "--relay") ||
		strings.Count(msg, "\n") != 0 || len(r.Stdout) != 0 {
		t.Fatalf("connect with no way to reach devices: want exit 1 and one line saying what to do, got %s", r)
	}
	if r.Elapsed > 5*time.Second {
		t.Errorf("took %s, want at once", r.Elapsed)
	}
	t.Logf("%s (%s)", msg, r.Elapsed.Round(time.Millisecond))
}

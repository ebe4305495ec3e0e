//go:build linux

package e2e

// Names you choose, end to end, on the shared fixture: the running socksd's
// home gets a pet name and joins a fleet whose admin signs names; both kinds
// of name then reach the device's sshd and web server through that socksd
// (nc -X 5, SOCKS and HTTP CONNECT with curl), through `tunnel connect` and
// through `tunnel bind`, and known-hosts and ping answer for them,
// without restarting socksd. A tampered names.signed is refused.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitName polls the socksd until host:22 answers 0x00 and returns how
// long that took: a name added while socksd runs must work within about
// a second (it re-reads its names files at most once a second).
func waitName(t *testing.T, socksAddr, host string) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		rep, err := socksConnect(socksAddr, host, 22)
		if err == nil && rep.Code == repSucceeded {
			rep.Conn.Close()
			return time.Since(start)
		}
		if err == nil && rep.Conn != nil {
			rep.Conn.Close()
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("socksd never resolved %s (last: %v, reply %v)", host, err, replyName(rep.Code))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reachByName checks that host (a name) reaches the device's sshd and web
// server every way a user would.
func reachByName(t *testing.T, e *sharedEnv, host string) {
	t.Helper()
	word := "hello-" + strings.TrimSuffix(host, ".tunnel")
	if err := e.sshd.checkEcho(30*time.Second, nil, e.ncProxy(), host, word+"-nc"); err != nil {
		t.Fatal(err)
	}
	connect := tunnelBin + " --home " + e.socksHome + " connect --relay " + e.relayAddr + " %h %p"
	r := e.sshd.ssh(40*time.Second, nil, nil, connect, host, "echo "+word+"-connect")
	if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != word+"-connect" {
		t.Fatalf("ssh -o ProxyCommand=%q to %s: %s", connect, host, r)
	}
	if s := strings.TrimSpace(string(r.Stderr)); s != "" {
		t.Errorf("tunnel connect not quiet on success:\n%s", tail(s, 30, 4<<10))
	}
	// tunnel bind, through the running socksd, to the name without
	// .tunnel as a user types it.
	_, port := startBind(t, e.socksHome, "0:"+strings.TrimSuffix(host, ".tunnel")+":22")
	if r := sshPort(e.sshd, port, 30*time.Second, nil, "echo "+word+"-bind"); r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != word+"-bind" {
		t.Fatalf("ssh -p %d through tunnel bind to %s: %s", port, host, r)
	}
	// known-hosts (as ssh's KnownHostsCommand gives it) and ping (as a
	// user types it, .tunnel left out), through the running socksd.
	r = runTunnel(30*time.Second, nil, "--home", e.socksHome, "known-hosts", host)
	if r.Code != 0 || !strings.HasPrefix(string(r.Stdout), host+" ssh-") {
		t.Fatalf("known-hosts %s: %s", host, r)
	}
	r = runTunnel(30*time.Second, nil, "--home", e.socksHome, "ping", "--count", "1", strings.TrimSuffix(host, ".tunnel"))
	if r.Code != 0 || !strings.HasPrefix(string(r.Stdout), "pong from ") {
		t.Fatalf("ping %s: %s", host, r)
	}
	url := "http://" + host + ":8080/names"
	// SOCKS5, HTTP CONNECT (-p), and a plain forward-proxy GET (-x alone).
	for _, proxy := range [][]string{{"--socks5-hostname", e.socksAddr}, {"-p", "-x", "http://" + e.socksAddr}, {"-x", "http://" + e.socksAddr}} {
		args := append([]string{"-sS", "--max-time", "30"}, proxy...)
		r := runCmd(40*time.Second, nil, nil, "curl", append(args, url)...)
		if r.Code != 0 || string(r.Stdout) != httpBody(host+":8080") {
			t.Fatalf("curl %v %s: %s", proxy, url, r)
		}
	}
}

func TestNames(t *testing.T) {
	e := getEnv(t)
	home := e.socksHome // the running socksd's home
	t.Cleanup(func() {
		runTunnel(20*time.Second, nil, "--home", home, "name", "rm", "garage")
		os.RemoveAll(filepath.Join(home, "fleetnames"))
		os.RemoveAll(filepath.Join(home, "fleets"))
	})
	must := func(args ...string) string {
		t.Helper()
		r := runTunnel(20*time.Second, nil, args...)
		if r.Code != 0 {
			t.Fatalf("tunnel %v: %s", args, r)
		}
		return string(r.Stdout)
	}

	t.Run("pet name", func(t *testing.T) {
		rep, err := socksConnect(e.socksAddr, "garage.tunnel", 22)
		if err != nil || rep.Code != repHostUnreachable {
			t.Fatalf("garage.tunnel before it is a name: %v, reply %s; want 0x04", err, replyName(rep.Code))
		}
		must("--home", home, "name", "add", "garage", e.deviceID+".tunnel")
		took := waitName(t, e.socksAddr, "garage.tunnel")
		t.Logf("a name added while socksd runs resolved after %s", took.Round(time.Millisecond))
		reachByName(t, e, "garage.tunnel")
	})

	t.Run("fleet name", func(t *testing.T) {
		admin := t.TempDir()
		must("--home", admin, "fleet", "create")
		cert := must("--home", admin, "fleet", "add", tunnelID(t, home))
		if r := runCmd(20*time.Second, nil, strings.NewReader(cert), tunnelBin, "--home", home, "fleet", "join", "-"); r.Code != 0 {
			t.Fatalf("fleet join: %s", r)
		}
		must("--home", admin, "fleet", "names", "add", "shed", e.deviceID)
		signed := filepath.Join(t.TempDir(), "names.signed")
		if err := os.WriteFile(signed, []byte(must("--home", admin, "fleet", "names", "export")), 0o644); err != nil {
			t.Fatal(err)
		}

		// Tampered: one entry's ID changed. Refused with one clear line,
		// exit 2, and the name does not appear.
		data, _ := os.ReadFile(signed)
		tampered := filepath.Join(t.TempDir(), "tampered.signed")
		os.WriteFile(tampered, []byte(strings.Replace(string(data), "name shed ", "name shee ", 1)), 0o644)
		r := runTunnel(20*time.Second, nil, "--home", home, "name", "import", tampered)
		first := strings.SplitN(string(r.Stderr), "\n", 2)[0]
		if r.Code != 2 || !strings.Contains(first, "signature does not verify") {
			t.Fatalf("import of a tampered list: %s; want exit 2 and a line saying the signature does not verify", r)
		}
		if _, err := os.Stat(filepath.Join(home, "fleetnames")); !os.IsNotExist(err) {
			t.Fatalf("a refused import wrote to the home: %v", err)
		}

		must("--home", home, "name", "import", signed)
		took := waitName(t, e.socksAddr, "shed.tunnel")
		t.Logf("an imported name resolved in the running socksd after %s", took.Round(time.Millisecond))
		reachByName(t, e, "shed.tunnel")
		if out := must("--home", home, "name", "list"); !strings.Contains(out, "shed "+e.deviceID+" fleet ") {
			t.Fatalf("name list does not show the imported name:\n%s", out)
		}
	})
}

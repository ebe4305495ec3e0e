//go:build linux

package e2e

// Local forwards: `tunnel bind SPEC` and `tunnel socksd --bind SPEC`. Plain
// OpenSSH (ssh -p, scp -P) reaches the device's sshd through a port on
// 127.0.0.1, with no ProxyCommand; a device that goes away closes
// connections cleanly while the bind keeps listening; bad input exits 2
// with nothing left listening.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bindLineRE is the line `tunnel bind` prints per bind.
var bindLineRE = regexp.MustCompile(`(?m)^127\.0\.0\.1:(\d+) → (\S+):(\d+)$`)

// startBind runs `tunnel bind ARGS…` and returns it with the local port
// of its first bind, read from the line it prints.
func startBind(t *testing.T, home string, args ...string) (*proc, int) {
	t.Helper()
	p := startTunnel(t, "bind", home, nil, append([]string{"bind"}, args...)...)
	deadline := time.Now().Add(15 * time.Second)
	for {
		if m := bindLineRE.FindStringSubmatch(p.log()); m != nil {
			port, _ := strconv.Atoi(m[1])
			return p, port
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("tunnel bind printed no bind line (%s):\n%s", p.exitDesc(), p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sshPort runs `ssh -p PORT user@127.0.0.1 REMOTE` with the fixture's
// client settings: no ProxyCommand, the bind is the whole path.
func sshPort(s *sshServer, port int, timeout time.Duration, stdin *bytes.Reader, remote string) result {
	var in *bytes.Reader
	if stdin != nil {
		in = stdin
	}
	args := []string{"-F", s.clientConf, "-p", strconv.Itoa(port), sshUser + "@127.0.0.1", remote}
	if in == nil {
		return runCmd(timeout, nil, nil, "ssh", args...)
	}
	return runCmd(timeout, nil, in, "ssh", args...)
}

// waitSSHPort retries `ssh -p PORT … echo WORD` until it works.
func waitSSHPort(t *testing.T, s *sshServer, port int, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		r := sshPort(s, port, 20*time.Second, nil, "echo bind-ok")
		if r.Code == 0 && strings.TrimSpace(string(r.Stdout)) == "bind-ok" {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("ssh -p %d never worked within %s; last: %s", port, timeout, r)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkBindSSH is what a bound port must carry: a command, scp, 64 MiB
// each way checksummed, and 32 sessions at once.
func checkBindSSH(t *testing.T, s *sshServer, port int) {
	t.Run("command", func(t *testing.T) {
		r := sshPort(s, port, 30*time.Second, nil, "echo $((6*7))")
		if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "42" {
			t.Fatalf("ssh -p %d pi@127.0.0.1 'echo $((6*7))': %s", port, r)
		}
	})
	// -O: the classic scp protocol; the test sshd has no sftp subsystem.
	t.Run("scp", func(t *testing.T) {
		data := randomBytes(t, 1<<20+3)
		local := filepath.Join(t.TempDir(), "scp.bin")
		if err := os.WriteFile(local, data, 0o644); err != nil {
			t.Fatal(err)
		}
		remote := randName("/tmp/tunnel-e2e-bind-scp-")
		t.Cleanup(func() { os.Remove(remote) })
		r := runCmd(time.Minute, nil, nil, "scp", "-O", "-F", s.clientConf, "-P", strconv.Itoa(port), local, sshUser+"@127.0.0.1:"+remote)
		if r.Code != 0 {
			t.Fatalf("scp -P %d: %s", port, r)
		}
		back := filepath.Join(t.TempDir(), "back.bin")
		r = runCmd(time.Minute, nil, nil, "scp", "-O", "-F", s.clientConf, "-P", strconv.Itoa(port), sshUser+"@127.0.0.1:"+remote, back)
		if r.Code != 0 {
			t.Fatalf("scp -P %d back: %s", port, r)
		}
		got, err := os.ReadFile(back)
		if err != nil || sha(got) != sha(data) {
			t.Fatalf("scp round trip: %d bytes sha256 %s (%v), want %d %s", len(got), sha(got), err, len(data), sha(data))
		}
	})
	t.Run("64MiB", func(t *testing.T) {
		const size = 64 << 20
		data := randomBytes(t, size)
		remote := randName("/tmp/tunnel-e2e-bind-big-")
		t.Cleanup(func() { os.Remove(remote) })
		r := sshPort(s, port, 3*time.Minute, bytes.NewReader(data), "cat > "+remote+" && sha256sum < "+remote)
		if r.Code != 0 {
			t.Fatalf("upload: %s", r)
		}
		if f := strings.Fields(string(r.Stdout)); len(f) == 0 || f[0] != sha(data) {
			t.Fatalf("upload of %d bytes: remote sha256 %q, want %s", size, r.Stdout, sha(data))
		}
		t.Logf("up %d MiB in %s (%s, with the remote sha256sum)", size>>20, r.Elapsed.Round(time.Millisecond), mibps(size, r.Elapsed))
		r = sshPort(s, port, 3*time.Minute, nil, "cat "+remote)
		if r.Code != 0 || len(r.Stdout) != size || sha(r.Stdout) != sha(data) {
			t.Fatalf("download: %d bytes sha256 %s, want %d %s (code %d, stderr %s)", len(r.Stdout), sha(r.Stdout), size, sha(data), r.Code, r.Stderr)
		}
		t.Logf("down %d MiB in %s (%s)", size>>20, r.Elapsed.Round(time.Millisecond), mibps(size, r.Elapsed))
	})
	t.Run("32 at once", func(t *testing.T) {
		const n = 32
		var wg sync.WaitGroup
		errs := make([]error, n)
		start := time.Now()
		for i := range n {
			wg.Go(func() {
				data := randomBytes(t, 64<<10+i)
				r := sshPort(s, port, 2*time.Minute, bytes.NewReader(data), "sha256sum")
				if f := strings.Fields(string(r.Stdout)); r.Code != 0 || len(f) == 0 || f[0] != sha(data) {
					errs[i] = fmt.Errorf("session %d: want sha256 %s, got %s", i, sha(data), r)
				}
			})
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		t.Logf("%d concurrent sessions through the bind, each a checksummed 64 KiB: wall %s", n, time.Since(start).Round(time.Millisecond))
	})
}

// TestBind: `tunnel bind 0:<id>:22` (no .tunnel, a free port) with the
// home of the running socksd, which it goes through.
func TestBind(t *testing.T) {
	e := getEnv(t)
	p, port := startBind(t, e.socksHome, "0:"+e.deviceID+":22")
	if want := fmt.Sprintf("127.0.0.1:%d → %s:22", port, e.host()); !strings.Contains(p.log(), want) {
		t.Errorf("bind printed %q, want the line %q", p.log(), want)
	}
	checkBindSSH(t, e.sshd, port)
}

// TestSocksdBind: the same through `socksd --bind`, its ports bound
// before it serves SOCKS.
func TestSocksdBind(t *testing.T) {
	e := getEnv(t)
	bindPort, socksPort := freePort(t, "tcp"), freePort(t, "tcp")
	sd := startTunnel(t, "socksd-bind", t.TempDir(), nil, "socksd", "--relay", e.relayAddr, "--listen", addr(socksPort),
		"--bind", fmt.Sprintf("%d:%s.tunnel:22", bindPort, e.deviceID), "--bind", "0:"+e.deviceID+":7001")
	if err := waitTCP(addr(socksPort), 15*time.Second, sd); err != nil {
		t.Fatal(err)
	}
	// The ports were bound before SOCKS was served.
	c, err := net.DialTimeout("tcp", addr(bindPort), time.Second)
	if err != nil {
		t.Fatalf("socksd serves SOCKS but its --bind port is not listening: %v", err)
	}
	c.Close()
	took := waitSSHPort(t, e.sshd, bindPort, 20*time.Second)
	t.Logf("first ssh through socksd --bind after %s", took.Round(time.Millisecond))
	// The second bind, on a port socksd picked and logged, reaches the
	// device's echo service.
	m := regexp.MustCompile(`"bind":"127\.0\.0\.1:(\d+)","target":"[^"]*:7001"`).FindStringSubmatch(sd.log())
	if m == nil {
		t.Fatalf("socksd logged no bind line for :7001:\n%s", sd.log())
	}
	echoPort, _ := strconv.Atoi(m[1])
	c, err = net.DialTimeout("tcp", addr(echoPort), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := gwEchoLine(c, "through the second bind\n"); err != nil {
		t.Fatalf("echo through the second bind: %v", err)
	}
	checkBindSSH(t, e.sshd, bindPort)
}

// TestBindDeviceOffline: a device that stops closes each new connection
// through the bind cleanly and at once; the bind keeps running and
// listening, and serves again once the device is back. The bind has a
// node of its own here (--relay), the other path roles.Reach takes.
func TestBindDeviceOffline(t *testing.T) {
	e := getEnv(t)
	devHome := t.TempDir()
	devID := tunnelID(t, devHome)
	publish := func(name string) *proc {
		return startTunnel(t, name, devHome, nil, "publish", "--relay", e.relayAddr, "-public", strconv.Itoa(e.sshd.port)+":22")
	}
	dev := publish("publish")
	b, port := startBind(t, t.TempDir(), "--relay", e.relayAddr, "0:"+devID+".tunnel:22")
	took := waitSSHPort(t, e.sshd, port, 20*time.Second)
	t.Logf("device reachable through the bind after %s", took.Round(time.Millisecond))

	if code, _, err := dev.stop(syscall.SIGTERM, stopTimeout); err != nil || code != 0 {
		t.Fatalf("stopping the device: exit %d, %v", code, err)
	}
	for i := range 3 {
		r := sshPort(e.sshd, port, 30*time.Second, nil, "echo should-not-run")
		if r.Code == 0 || r.TimedOut {
			t.Fatalf("ssh %d through the bind to a stopped device: want a failure, got %s", i, r)
		}
		if r.Elapsed > 5*time.Second {
			t.Errorf("ssh %d to a stopped device took %s to fail, want promptly", i, r.Elapsed.Round(time.Millisecond))
		}
		t.Logf("ssh %d to the stopped device failed in %s: %s", i, r.Elapsed.Round(time.Millisecond), strings.TrimSpace(string(r.Stderr)))
	}
	if b.exited() {
		t.Fatalf("tunnel bind exited when the device went away (%s)", b.exitDesc())
	}
	if n := b.count("bind connection refused"); n < 1 || n > 2 {
		t.Errorf("%d refusal lines for 3 refused connections within seconds, want 1 (rate-limited):\n%s", n, b.log())
	}

	publish("publish-again")
	took = waitSSHPort(t, e.sshd, port, 30*time.Second)
	t.Logf("device reachable again through the same bind %s after it restarted", took.Round(time.Millisecond))
}

// TestBindBadInput: a malformed SPEC, a LISTENHOST beyond loopback
// without --allow-remote, a port in use: exit 2, one clear line, nothing
// left listening; for tunnel bind and socksd --bind alike.
func TestBindBadInput(t *testing.T) {
	e := getEnv(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	target := e.deviceID + ":22"

	for _, tc := range []struct {
		name, want string
		args       func(free int) []string
	}{
		{"malformed", `malformed bind spec "2222:garage"`, func(int) []string { return []string{"2222:garage"} }},
		{"port out of range", `PORT "0": want 1 to 65535`, func(int) []string { return []string{"2222:garage:0"} }},
		{"remote", "not loopback", func(free int) []string { return []string{fmt.Sprintf("0.0.0.0:%d:%s", free, target)} }},
		{"remote v6", "not loopback", func(free int) []string { return []string{fmt.Sprintf("[::]:%d:%s", free, target)} }},
		{"port in use", fmt.Sprintf("bind 127.0.0.1:%d: address already in use", busyPort), func(free int) []string {
			return []string{fmt.Sprintf("%d:%s", free, target), fmt.Sprintf("%d:%s", busyPort, target)}
		}},
	} {
		t.Run("bind "+tc.name, func(t *testing.T) {
			free := freePort(t, "tcp")
			r := runTunnel(20*time.Second, nil, append([]string{"--home", e.socksHome, "bind"}, tc.args(free)...)...)
			checkBadBind(t, r, tc.want, free)
		})
		t.Run("socksd "+tc.name, func(t *testing.T) {
			free, socksPort, relayPort := freePort(t, "tcp"), freePort(t, "tcp"), freePort(t, "udp")
			args := []string{"--home", t.TempDir(), "socksd", "--listen", addr(socksPort), "--relay-listen", addr(relayPort)}
			for _, a := range tc.args(free) {
				args = append(args, "--bind", a)
			}
			r := runTunnel(20*time.Second, nil, args...)
			checkBadBind(t, r, tc.want, free, socksPort)
			// Nor the embedded rendezvous node.
			if c, err := net.ListenPacket("udp", addr(relayPort)); err != nil {
				t.Errorf("the embedded rendezvous node's port is still taken: %v", err)
			} else {
				c.Close()
			}
		})
	}
}

func checkBadBind(t *testing.T, r result, want string, free ...int) {
	t.Helper()
	msg := string(r.Stderr)
	first := strings.SplitN(msg, "\n", 2)[0]
	if r.Code != 2 || r.TimedOut || !strings.Contains(first, want) {
		t.Fatalf("want exit 2 and a first line containing %q, got %s", want, r)
	}
	if r.Elapsed > 5*time.Second {
		t.Errorf("took %s to refuse", r.Elapsed.Round(time.Millisecond))
	}
	for _, p := range free {
		if c, err := net.DialTimeout("tcp", addr(p), time.Second); err == nil {
			c.Close()
			t.Errorf("something still listens on %s after the refusal", addr(p))
		}
	}
	t.Logf("%s", first)
}

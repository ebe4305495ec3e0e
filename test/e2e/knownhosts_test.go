//go:build linux

package e2e

// `tunnel known-hosts` and `tunnel ping` against a device of the test's
// own, publishing sshds with host keys of every common type.

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// keySet is the "type base64" of each line of known_hosts-format output,
// sorted, after checking each line names wantHost.
func keySet(t *testing.T, out, wantHost string) []string {
	t.Helper()
	var set []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("line %q: want HOST TYPE KEY", line)
		}
		if wantHost != "" && f[0] != wantHost {
			t.Fatalf("line %q names host %q, want %q", line, f[0], wantHost)
		}
		set = append(set, f[1]+" "+f[2])
	}
	slices.Sort(set)
	return set
}

// keyscan is what ssh-keyscan says the sshd on port has.
func keyscan(t *testing.T, port int) []string {
	t.Helper()
	r := runCmd(20*time.Second, nil, nil, "ssh-keyscan", "-p", strconv.Itoa(port), "127.0.0.1")
	if r.Code != 0 {
		t.Fatalf("ssh-keyscan: %s", r)
	}
	// Its lines name the host as [127.0.0.1]:PORT.
	return keySet(t, string(r.Stdout), "")
}

func startSSHDT(t *testing.T, types ...string) *sshServer {
	t.Helper()
	s, err := startSSHDKeys(types...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	return s
}

// oneLine checks a failed command: non-zero, nothing on stdout, one line
// on stderr containing want.
func failsWithOneLine(t *testing.T, what string, r result, want string) {
	t.Helper()
	stderr := strings.TrimRight(string(r.Stderr), "\n")
	if r.Code == 0 || len(r.Stdout) != 0 || stderr == "" || strings.Contains(stderr, "\n") || !strings.Contains(stderr, want) {
		t.Fatalf("%s: want exit != 0, empty stdout and one stderr line saying %q; got %s", what, want, r)
	}
	t.Logf("%s: %s", what, stderr)
}

func TestKnownHosts(t *testing.T) {
	e := getEnv(t)
	sshA := startSSHDT(t, "ed25519", "ecdsa", "rsa")
	home := filepath.Join(t.TempDir(), "device")
	publish := func(sshd *sshServer) *proc {
		p := startTunnel(t, "publish-hostkeys", home, nil, "publish", "--relay", e.relayAddr,
			"-public", fmt.Sprintf("%d:22", sshd.port), "-public", fmt.Sprintf("%d:2222", sshd.port),
			"-public", fmt.Sprintf("127.0.0.1:%d:8080", e.http.port))
		return p
	}
	dev := publish(sshA)
	id := tunnelID(t, home)
	host := id + ".tunnel"
	if _, err := waitReachable(e.socksAddr, host, 22, 20*time.Second); err != nil {
		t.Fatalf("device not reachable: %v\n%s", err, dev.log())
	}
	want := keyscan(t, sshA.port)
	if len(want) != 3 {
		t.Fatalf("ssh-keyscan found %d keys, want ed25519, ecdsa and rsa: %v", len(want), want)
	}
	fresh := t.TempDir()

	t.Run("running socksd, port 22", func(t *testing.T) {
		// Upper case as typed: printed lowercased, as ssh compares.
		r := runTunnel(30*time.Second, nil, "--home", e.socksHome, "known-hosts", strings.ToUpper(id)+".tunnel")
		if r.Code != 0 || len(r.Stderr) != 0 {
			t.Fatalf("known-hosts: %s", r)
		}
		if got := keySet(t, string(r.Stdout), host); !slices.Equal(got, want) {
			t.Fatalf("known-hosts printed %v, ssh-keyscan %v", got, want)
		}
	})
	t.Run("own node, port 2222", func(t *testing.T) {
		r := runTunnel(30*time.Second, nil, "--home", fresh, "known-hosts", "--relay", e.relayAddr, host, "2222")
		if r.Code != 0 || len(r.Stderr) != 0 {
			t.Fatalf("known-hosts: %s", r)
		}
		if got := keySet(t, string(r.Stdout), "["+host+"]:2222"); !slices.Equal(got, want) {
			t.Fatalf("known-hosts printed %v, ssh-keyscan %v", got, want)
		}
	})
	t.Run("not ssh", func(t *testing.T) {
		r := runTunnel(30*time.Second, nil, "--home", e.socksHome, "known-hosts", host, "8080")
		failsWithOneLine(t, "known-hosts of a web server", r, "does not speak SSH")
	})
	t.Run("offline device", func(t *testing.T) {
		other := tunnelID(t, t.TempDir())
		r := runTunnel(30*time.Second, nil, "--home", fresh, "known-hosts", "--relay", e.relayAddr, other+".tunnel")
		failsWithOneLine(t, "known-hosts of an offline device", r, "offline")
	})
	t.Run("usage", func(t *testing.T) {
		for _, args := range [][]string{{"known-hosts"}, {"known-hosts", host, "0"}, {"known-hosts", host, "70000"},
			{"ping"}, {"ping", "--count", "0", host}} {
			if r := runTunnel(10*time.Second, nil, append([]string{"--home", fresh}, args...)...); r.Code != 2 {
				t.Errorf("tunnel %v: want exit 2, got %s", args, r)
			}
		}
	})

	sshArgs := func(sshd *sshServer, extra ...string) []string {
		return append([]string{"-F", sshd.clientConf, "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
			"-o", "ProxyCommand=" + tunnelBin + " --home " + fresh + " connect --relay " + e.relayAddr + " %h %p"}, extra...)
	}
	t.Run("ssh with KnownHostsCommand, StrictHostKeyChecking yes", func(t *testing.T) {
		args := sshArgs(sshA, "-o", "UserKnownHostsFile=/dev/null",
			"-o", "KnownHostsCommand="+tunnelBin+" --home "+fresh+" known-hosts --relay "+e.relayAddr+" %H %p",
			sshUser+"@"+host, "echo pinned-ok")
		r := runCmd(40*time.Second, nil, nil, "ssh", args...)
		if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "pinned-ok" {
			t.Fatalf("ssh: %s", r)
		}
	})

	// The done-means of issue 13: only the block `tunnel ssh-config`
	// prints (here for the running socksd's home), StrictHostKeyChecking
	// yes, no known_hosts file: the first connection succeeds, on port 22
	// and on 2222 (where ssh asks KnownHostsCommand for [HOST]:2222).
	t.Run("printed ssh-config block", func(t *testing.T) {
		r := runTunnel(10*time.Second, nil, "--home", e.socksHome, "ssh-config")
		if r.Code != 0 {
			t.Fatalf("ssh-config: %s", r)
		}
		conf := filepath.Join(t.TempDir(), "ssh_config")
		who := fmt.Sprintf("Host *\n  IdentityFile %s\n  IdentitiesOnly yes\n  BatchMode yes\n  LogLevel ERROR\n",
			filepath.Join(sshA.dir, "id_ed25519"))
		if err := os.WriteFile(conf, append(r.Stdout, who...), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, port := range []string{"22", "2222"} {
			r := runCmd(40*time.Second, nil, nil, "ssh", "-F", conf, "-o", "StrictHostKeyChecking=yes",
				"-o", "UserKnownHostsFile=/dev/null", "-o", "GlobalKnownHostsFile=/dev/null", "-p", port,
				sshUser+"@"+host, "echo block-ok")
			if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "block-ok" || len(r.Stderr) != 0 {
				t.Fatalf("ssh -p %s with the printed block:\n%s\n%s", port, r.Stdout, r)
			}
			t.Logf("ssh -p %s, first connection, StrictHostKeyChecking yes: ok in %s", port, r.Elapsed.Round(time.Millisecond))
		}
	})

	t.Run("swapped sshd is refused", func(t *testing.T) {
		r := runTunnel(30*time.Second, nil, "--home", e.socksHome, "known-hosts", host)
		if r.Code != 0 {
			t.Fatalf("known-hosts: %s", r)
		}
		pinned := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(pinned, r.Stdout, 0o600); err != nil {
			t.Fatal(err)
		}
		sshB := startSSHDT(t, "ed25519", "ecdsa", "rsa")
		if _, _, err := dev.stop(syscall.SIGTERM, 10*time.Second); err != nil {
			t.Fatalf("stop the device: %v", err)
		}
		dev = publish(sshB)
		// The same device, now in front of another sshd.
		deadline := time.Now().Add(30 * time.Second)
		for {
			r := runTunnel(30*time.Second, nil, "--home", fresh, "known-hosts", "--relay", e.relayAddr, host)
			if r.Code == 0 && slices.Equal(keySet(t, string(r.Stdout), host), keyscan(t, sshB.port)) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the device never answered with the new sshd's keys: %s", r)
			}
			time.Sleep(500 * time.Millisecond)
		}
		r = runCmd(40*time.Second, nil, nil, "ssh", sshArgs(sshB, "-o", "UserKnownHostsFile="+pinned,
			sshUser+"@"+host, "echo should-not-run")...)
		if r.Code == 0 || strings.Contains(string(r.Stdout), "should-not-run") ||
			!strings.Contains(string(r.Stderr), "Host key verification failed") {
			t.Fatalf("ssh to a swapped sshd with the old keys pinned: want host key verification failed, got %s", r)
		}
	})
}

func TestPing(t *testing.T) {
	e := getEnv(t)
	host := e.deviceID + ".tunnel"
	r := runTunnel(30*time.Second, nil, "--home", e.socksHome, "ping", "--count", "3", "--interval", "100ms", host)
	lines := strings.Split(strings.TrimSpace(string(r.Stdout)), "\n")
	if r.Code != 0 || len(lines) != 3 || len(r.Stderr) != 0 {
		t.Fatalf("ping through the running socksd: want 3 rounds, exit 0, got %s", r)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "pong from "+e.deviceID[:8]) || !(strings.Contains(l, " via direct 127.0.0.1:") || strings.Contains(l, " via direct [::1]:") ||
			strings.Contains(l, " relayed via "+e.relayAddr)) || !strings.Contains(l, " in ") {
			t.Errorf("ping line %q", l)
		}
	}
	t.Logf("ping through socksd:\n%s", r.Stdout)
	r = runTunnel(30*time.Second, nil, "--home", t.TempDir(), "ping", "--relay", e.relayAddr, "--count", "2", "--interval", "100ms", host)
	if r.Code != 0 || len(strings.Split(strings.TrimSpace(string(r.Stdout)), "\n")) != 2 {
		t.Fatalf("ping with a node of its own: %s", r)
	}
	t.Logf("ping with its own node:\n%s", r.Stdout)
	other := tunnelID(t, t.TempDir())
	r = runTunnel(30*time.Second, nil, "--home", t.TempDir(), "ping", "--relay", e.relayAddr, "--count", "1", other+".tunnel")
	if r.Code == 0 || !strings.Contains(string(r.Stderr), "offline") {
		t.Fatalf("ping of an offline device: want exit != 0 saying offline, got %s", r)
	}
	t.Logf("offline: %s", r.Stderr)
}

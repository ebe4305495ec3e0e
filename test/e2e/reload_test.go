package e2e

// Config files and SIGHUP end to end: a device publishing from a --config
// file reloads it under live ssh sessions (issue 15).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// catSession is an ssh session running cat: each line sent comes back
// while the session lives.
type catSession struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string // closed when ssh's stdout ends
	exited chan struct{}
	cancel context.CancelFunc
}

func startCatSession(t *testing.T, s *sshServer, proxy, host string) *catSession {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ssh", "-F", s.clientConf, "-o", "ProxyCommand="+proxy, sshUser+"@"+host, "cat")
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 3 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cs := &catSession{cmd: cmd, stdin: stdin, lines: make(chan string, 16), exited: make(chan struct{}), cancel: cancel}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			cs.lines <- sc.Text()
		}
		close(cs.lines)
	}()
	go func() { cmd.Wait(); close(cs.exited) }()
	t.Cleanup(func() { cancel(); <-cs.exited })
	return cs
}

// echo sends word and reports whether it came back within timeout.
func (cs *catSession) echo(word string, timeout time.Duration) error {
	if _, err := fmt.Fprintln(cs.stdin, word); err != nil {
		return fmt.Errorf("send %q: %w", word, err)
	}
	select {
	case l, ok := <-cs.lines:
		if !ok {
			return fmt.Errorf("session ended before %q came back", word)
		}
		if l != word {
			return fmt.Errorf("sent %q, got %q", word, l)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%q did not come back within %s", word, timeout)
	}
}

// sshOnPort runs remote over ssh to host's published port through the
// SOCKS proxy.
func sshOnPort(s *sshServer, proxy, host string, port int, remote string) result {
	return runCmd(30*time.Second, nil, nil, "ssh", "-F", s.clientConf, "-p", fmt.Sprint(port),
		"-o", "ProxyCommand="+ncProxy(proxy), sshUser+"@"+host, remote)
}

// writeConfig writes text to path atomically, as an editor or a
// deployment tool would.
func writeConfig(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A SIGHUP that adds a port and narrows a private list: the session of the
// client still listed goes on passing data, the other's is closed, and the
// added port works at once. A broken file on the next SIGHUP is refused
// with one log line, and the ports loaded before keep working.
func TestReloadPublishUnderLiveSessions(t *testing.T) {
	e := getEnv(t)
	homeA, homeB, deviceHome := t.TempDir(), t.TempDir(), t.TempDir()
	idA, idB, deviceID := tunnelID(t, homeA), tunnelID(t, homeB), tunnelID(t, deviceHome)
	host := deviceID + ".tunnel"

	socksA, relay := addr(freePort(t, "tcp")), addr(freePort(t, "udp"))
	pA := startTunnel(t, "socksd-A", homeA, nil, "socksd", "--listen", socksA, "--relay-listen", relay)
	if err := waitTCP(socksA, 15*time.Second, pA); err != nil {
		t.Fatal(err)
	}
	socksB := addr(freePort(t, "tcp"))
	pB := startTunnel(t, "socksd-B", homeB, nil, "socksd", "--listen", socksB, "--relay", relay)
	if err := waitTCP(socksB, 15*time.Second, pB); err != nil {
		t.Fatal(err)
	}

	sshdTarget := fmt.Sprintf("127.0.0.1:%d", e.sshd.port)
	conf := filepath.Join(t.TempDir(), "publish.yaml")
	writeConfig(t, conf, fmt.Sprintf(`# both laptops on 22
relay: %s
ports:
  - spec: %s:22
    mode: private
    ids: [%s, %s]
`, relay, sshdTarget, idA, idB))
	dev := startTunnel(t, "publish", deviceHome, nil, "--log-format", "json", "publish", "--config", conf)
	for _, s := range []string{socksA, socksB} {
		if _, err := waitReachable(s, host, 22, 20*time.Second); err != nil {
			t.Fatalf("device not reachable on 22 through %s: %v\n%s", s, err, dev.log())
		}
	}
	a := startCatSession(t, e.sshd, ncProxy(socksA), host)
	b := startCatSession(t, e.sshd, ncProxy(socksB), host)
	for name, cs := range map[string]*catSession{"A": a, "B": b} {
		if err := cs.echo("before-"+name, 30*time.Second); err != nil {
			t.Fatalf("session %s before the reload: %v\n%s", name, err, dev.log())
		}
	}
	if r := sshOnPort(e.sshd, socksA, host, 2200, "true"); r.Code == 0 {
		t.Fatalf("port 2200 reachable before it was published: %s", r)
	}

	// Narrow 22 to A, add 2200 for anyone.
	writeConfig(t, conf, fmt.Sprintf(`relay: %s
ports:
  - {spec: "%s:22", mode: private, ids: [%s]}
  - {spec: "%s:2200", mode: public}
`, relay, sshdTarget, idA, sshdTarget))
	off := dev.logSize()
	if err := dev.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !dev.waitLog(`"message":"reloaded"`, 1, 10*time.Second) {
		t.Fatalf("no reloaded line after SIGHUP:\n%s", dev.logSince(off))
	}
	select {
	case <-b.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("B's session, no longer listed, still open 15 s after the reload\n%s", dev.logSince(off))
	}
	for i := range 5 {
		if err := a.echo(fmt.Sprintf("after-%d", i), 10*time.Second); err != nil {
			t.Fatalf("A's session, still listed, after the reload: %v\n%s", err, dev.logSince(off))
		}
	}
	if !strings.Contains(dev.logSince(off), `"outcome":"revoked"`) {
		t.Errorf("no stream logged revoked after the reload:\n%s", dev.logSince(off))
	}
	if r := sshOnPort(e.sshd, socksB, host, 2200, "echo added"); r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "added" {
		t.Fatalf("added port 2200, through B: %s\n%s", r, dev.logSince(off))
	}
	if r := e.sshd.ssh(20*time.Second, nil, nil, ncProxy(socksB), host, "true"); r.Code == 0 {
		t.Errorf("B still logs in on 22 after the reload dropped it: %s", r)
	}

	// A broken file: refused with one line, the ports in force stay.
	writeConfig(t, conf, "relay: [unterminated\n")
	off = dev.logSize()
	if err := dev.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !dev.waitLog("reload refused", 1, 10*time.Second) {
		t.Fatalf("no refusal after a SIGHUP with a broken file:\n%s", dev.logSince(off))
	}
	time.Sleep(500 * time.Millisecond) // a second line would come now
	if n := strings.Count(dev.logSince(off), "reload"); n != 1 {
		t.Errorf("%d log lines about the broken reload, want 1:\n%s", n, dev.logSince(off))
	}
	if err := a.echo("after-broken", 10*time.Second); err != nil {
		t.Errorf("A's session after a refused reload: %v", err)
	}
	if r := sshOnPort(e.sshd, socksB, host, 2200, "echo still"); r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "still" {
		t.Errorf("port 2200 after a refused reload: %s", r)
	}
	if dev.exited() {
		t.Fatalf("publish exited: %s", dev.exitDesc())
	}
}

//go:build linux

package e2e

// Config files and SIGHUP end to end: a device publishing from a --config
// file reloads it under live ssh sessions (issue 15).

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
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

// liveHTTPS is one HTTPS connection kept open, asking GET / again and
// again (HTTP/1.1 keep-alive).
type liveHTTPS struct {
	conn *tls.Conn
	br   *bufio.Reader
	host string
}

func dialHTTPS(t *testing.T, gwAddr, host, caFile string) *liveHTTPS {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", gwAddr,
		&tls.Config{RootCAs: pool, ServerName: host, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("TLS handshake with the gateway for %s: %v", host, err)
	}
	t.Cleanup(func() { c.Close() })
	return &liveHTTPS{conn: c, br: bufio.NewReader(c), host: host}
}

// get asks GET / on the kept connection and returns the body.
func (l *liveHTTPS) get() (string, error) {
	_ = l.conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(l.conn, "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", l.host); err != nil {
		return "", err
	}
	res, err := http.ReadResponse(l.br, nil)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err == nil && res.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %s", res.Status)
	}
	return string(body), err
}

// replaceFile puts src's contents at dst atomically, as certbot's deploy
// hooks and cert-manager do.
func replaceFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dst, string(b))
}

// The gateway's certificate swapped by SIGHUP under live HTTPS clients:
// connections made before keep working, new handshakes get the new
// certificate, and a pair that does not load keeps the one in use.
func TestReloadGatewayCertificate(t *testing.T) {
	w := startGWWorld(t, 0)
	oldCert, newCert := gwWriteCert(t, gwDomain), gwWriteCert(t, gwDomain)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	replaceFile(t, oldCert.cert, certPath)
	replaceFile(t, oldCert.key, keyPath)
	httpsAddr := addr(freePort(t, "tcp"))
	conf := filepath.Join(t.TempDir(), "gateway.yaml")
	writeConfig(t, conf, fmt.Sprintf("relay: %s\nhttps: %s\ndomain: %s\ntls-cert: %s\ntls-key: %s\n",
		w.relay, httpsAddr, gwDomain, certPath, keyPath))
	gw := startTunnel(t, "gateway", t.TempDir(), nil, "--log-format", "json", "gateway", "--config", conf)
	if !gw.waitLog("gateway listening", 1, 15*time.Second) {
		t.Fatalf("gateway never listened:\n%s", gw.log())
	}
	host := w.deviceID + "-8080." + gwDomain
	want := gwPage("8080", host) // as the live clients ask
	_, port, _ := net.SplitHostPort(httpsAddr)
	wantCurl := gwPage("8080", host+":"+port) // curl names the port
	curl := func(ca string) result {
		return runCmd(30*time.Second, nil, nil, "curl", "-sS", "--max-time", "20", "--cacert", ca,
			"--resolve", host+":"+port+":127.0.0.1", "https://"+host+":"+port+"/")
	}
	deadline := time.Now().Add(20 * time.Second)
	for r := curl(oldCert.ca); r.Code != 0 || string(r.Stdout) != wantCurl; r = curl(oldCert.ca) {
		if time.Now().After(deadline) {
			t.Fatalf("the device's page never came through the gateway: %s", r)
		}
		time.Sleep(300 * time.Millisecond)
	}
	var live []*liveHTTPS
	for range 3 {
		l := dialHTTPS(t, httpsAddr, host, oldCert.ca)
		if body, err := l.get(); err != nil || body != want {
			t.Fatalf("live client before the swap: %q, %v", body, err)
		}
		live = append(live, l)
	}

	replaceFile(t, newCert.cert, certPath)
	replaceFile(t, newCert.key, keyPath)
	off := gw.logSize()
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !gw.waitLog("reloaded the TLS certificate", 1, 10*time.Second) {
		t.Fatalf("no reload line after SIGHUP:\n%s", gw.logSince(off))
	}
	for i, l := range live {
		if body, err := l.get(); err != nil || body != want {
			t.Errorf("live client %d after the swap: %q, %v", i, body, err)
		}
	}
	if r := curl(newCert.ca); r.Code != 0 || string(r.Stdout) != wantCurl {
		t.Errorf("new handshake trusting only the new CA: %s", r)
	}
	if r := curl(oldCert.ca); r.Code == 0 {
		t.Errorf("new handshake trusting only the old CA succeeded: the old certificate is still served")
	}

	// A broken key: refused with one line, the new certificate stays.
	writeConfig(t, keyPath, "-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
	off = gw.logSize()
	if err := gw.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !gw.waitLog("reload refused", 1, 10*time.Second) {
		t.Fatalf("no refusal after a SIGHUP with a broken key:\n%s", gw.logSince(off))
	}
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(gw.logSince(off), "reload"); n != 1 {
		t.Errorf("%d log lines about the broken reload, want 1:\n%s", n, gw.logSince(off))
	}
	if r := curl(newCert.ca); r.Code != 0 || string(r.Stdout) != wantCurl {
		t.Errorf("after a refused reload: %s", r)
	}
	for i, l := range live {
		if body, err := l.get(); err != nil || body != want {
			t.Errorf("live client %d after the refused reload: %q, %v", i, body, err)
		}
	}
}

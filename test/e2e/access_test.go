//go:build linux

package e2e

// Access modes end to end. One device publishes, through the rendezvous
// node embedded in client A's socksd:
//
//	<id>.tunnel:80   -> HTTP server    -public 127.0.0.1:HTTP:80
//	<id>.tunnel:22   -> sshd           -private 127.0.0.1:SSHD:22,<A>
//	<id>.tunnel:2222 -> sshd           -protected 127.0.0.1:SSHD:2222 --fleet F
//	<id>.tunnel:7070 -> PROXY v2 check -public   …:7070               -proxy-protocol 7070
//	<id>.tunnel:7071 -> PROXY v2 check -private  …:7071,<A>           -proxy-protocol 7071
//	<id>.tunnel:7072 -> PROXY v2 check -protected …:7072              -proxy-protocol 7072
//
// and each client is its own socksd with its own home:
//
//	A  listed in -private (its socksd embeds the rendezvous node)
//	B  a stranger
//	M  member of fleet F (admin home F: fleet create, fleet add M; M: fleet join)
//	N  no credential
//	GM member of another fleet G
//	X  member of F with a credential that expires a few seconds after issue
//	C  holds a copy of M's credential file
//
// The device decides on the client key of the end-to-end connection; every
// denial must be SOCKS reply 0x02 and exactly one JSON line on the device's
// stderr: message "stream", outcome "denied", the client's full ID, the port
// and the reason.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// Published (remote) ports of the access device.
const (
	accHTTP         = 80
	accPrivateSSH   = 22
	accProtectedSSH = 2222
	accPPPublic     = 7070
	accPPPrivate    = 7071
	accPPProtected  = 7072
)

// accExpiresIn is the validity of X's credential: long enough to be joined
// right after issue, short enough to have expired when its subtest runs.
const accExpiresIn = "4s"

type accessClient struct {
	name  string
	home  string
	id    string
	socks string // 127.0.0.1:PORT of its socksd
	proc  *proc  // its socksd
}

type accessEnv struct {
	e        *sharedEnv // for its sshd
	relay    string     // UDP address of the rendezvous node in A's socksd
	device   *proc
	deviceID string
	fleetF   string
	fleetG   string
	adminF   string // homes of the fleet admins
	adminG   string
	mCert    string // the credential file `fleet add` wrote for M
	xExpiry  time.Time
	http     *httpServer
	pp       *tcpServer
	clients  map[string]*accessClient
}

func (a *accessEnv) host() string { return a.deviceID + ".tunnel" }

func (a *accessEnv) c(name string) *accessClient { return a.clients[name] }

// accFleet runs `tunnel --home HOME fleet ARGS…`.
func accFleet(home string, args ...string) result {
	return runTunnel(20*time.Second, nil, append([]string{"--home", home, "fleet"}, args...)...)
}

func accMustFleet(t *testing.T, home string, args ...string) result {
	t.Helper()
	r := accFleet(home, args...)
	if r.Code != 0 {
		t.Fatalf("tunnel --home %s fleet %s: %s", home, strings.Join(args, " "), r)
	}
	return r
}

// accFleetCreate makes a fleet in home and returns its ID.
func accFleetCreate(t *testing.T, home string) string {
	t.Helper()
	id := strings.TrimSpace(string(accMustFleet(t, home, "create").Stdout))
	if !idRE.MatchString(id) {
		t.Fatalf("fleet create printed %q, want a 52-character fleet ID", id)
	}
	return id
}

// accHeld is `fleet list --json` in home.
func accHeld(t *testing.T, home string) []accHeldCred {
	t.Helper()
	r := accMustFleet(t, home, "list", "--json")
	var out []accHeldCred
	if s := strings.TrimSpace(string(r.Stdout)); s != "" {
		if err := json.Unmarshal([]byte(s), &out); err != nil {
			t.Fatalf("fleet list --json in %s: %v: %s", home, err, r)
		}
	}
	return out
}

type accHeldCred struct {
	Fleet      string `json:"fleet"`
	Member     string `json:"member"`
	ValidUntil string `json:"valid_until"`
	Status     string `json:"status"`
}

func setupAccess(t *testing.T) *accessEnv {
	t.Helper()
	a := &accessEnv{e: getEnv(t), clients: map[string]*accessClient{}}
	var err error
	if a.http, err = startHTTPServer(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.http.close)
	if a.pp, err = startTCPServer(accPPHandler); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.pp.close)

	for _, n := range []string{"A", "B", "M", "N", "GM", "X", "C"} {
		c := &accessClient{name: n, home: filepath.Join(t.TempDir(), "home-"+n)}
		c.id = tunnelID(t, c.home)
		a.clients[n] = c
	}
	deviceHome := t.TempDir()
	a.deviceID = tunnelID(t, deviceHome)

	// Fleets: F (the device's) with members M and X, G with member GM.
	a.adminF, a.adminG = t.TempDir(), t.TempDir()
	a.fleetF, a.fleetG = accFleetCreate(t, a.adminF), accFleetCreate(t, a.adminG)
	if a.fleetF == a.fleetG {
		t.Fatalf("two admin homes made the same fleet ID %s", a.fleetF)
	}
	certs := t.TempDir()
	issue := func(admin, member, file string, extra ...string) string {
		path := filepath.Join(certs, file)
		args := append([]string{"add", "--out", path}, extra...)
		accMustFleet(t, admin, append(args, a.c(member).id)...)
		return path
	}
	a.mCert = issue(a.adminF, "M", "m.cert")
	accMustFleet(t, a.c("M").home, "join", a.mCert)
	accMustFleet(t, a.c("GM").home, "join", issue(a.adminG, "GM", "gm.cert"))
	// Joined at once: an expired credential is not installed (checked below).
	accMustFleet(t, a.c("X").home, "join", issue(a.adminF, "X", "x.cert", "--expires", accExpiresIn))
	held := accHeld(t, a.c("X").home)
	if len(held) != 1 || held[0].Fleet != a.fleetF || held[0].Member != a.c("X").id {
		t.Fatalf("fleet list --json in X's home after join: %+v, want one credential of fleet %s for %s", held, a.fleetF, a.c("X").id)
	}
	if a.xExpiry, err = time.Parse(time.RFC3339, held[0].ValidUntil); err != nil {
		t.Fatalf("fleet list --json: valid_until %q: %v", held[0].ValidUntil, err)
	}

	// A's socksd embeds the rendezvous node everyone else uses.
	A := a.c("A")
	A.socks, a.relay = addr(freePort(t, "tcp")), addr(freePort(t, "udp"))
	A.proc = startTunnel(t, "socksd-A", A.home, nil, "socksd", "--listen", A.socks, "--relay-listen", a.relay)
	if err := waitTCP(A.socks, 15*time.Second, A.proc); err != nil {
		t.Fatal(err)
	}

	sshd := strconv.Itoa(a.e.sshd.port)
	pp := strconv.Itoa(a.pp.port)
	args := []string{"--log-format", "json", "publish", "--relay", a.relay, "--fleet", a.fleetF,
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", a.http.port, accHTTP),
		"-private", fmt.Sprintf("127.0.0.1:%s:%d,%s", sshd, accPrivateSSH, A.id),
		"-protected", fmt.Sprintf("127.0.0.1:%s:%d", sshd, accProtectedSSH),
		"-public", fmt.Sprintf("127.0.0.1:%s:%d", pp, accPPPublic),
		"-private", fmt.Sprintf("127.0.0.1:%s:%d,%s", pp, accPPPrivate, A.id),
		"-protected", fmt.Sprintf("127.0.0.1:%s:%d", pp, accPPProtected),
		"-proxy-protocol", strconv.Itoa(accPPPublic),
		"-proxy-protocol", strconv.Itoa(accPPPrivate),
		"-proxy-protocol", strconv.Itoa(accPPProtected),
	}
	a.device = startTunnel(t, "publish-access", deviceHome, nil, args...)

	for _, n := range []string{"B", "M", "N", "GM", "X", "C"} {
		c := a.c(n)
		c.socks = addr(freePort(t, "tcp"))
		c.proc = startTunnel(t, "socksd-"+n, c.home, nil, "socksd", "--relay", a.relay, "--listen", c.socks)
	}
	for _, n := range []string{"B", "M", "N", "GM", "X", "C"} {
		if err := waitTCP(a.c(n).socks, 15*time.Second, a.c(n).proc); err != nil {
			t.Fatal(err)
		}
	}
	if took, err := waitReachable(A.socks, a.host(), accHTTP, 15*time.Second); err != nil {
		t.Fatalf("access device never became reachable: %v\n%s", err, a.logs(nil))
	} else {
		t.Logf("access device %s reachable after %s; fleet F %s, fleet G %s; clients: %s",
			a.deviceID, took.Round(time.Millisecond), a.fleetF, a.fleetG, a.clientList())
	}
	return a
}

func (a *accessEnv) clientList() string {
	var parts []string
	for _, n := range []string{"A", "B", "M", "N", "GM", "X", "C"} {
		parts = append(parts, n+"="+a.c(n).id)
	}
	return strings.Join(parts, " ")
}

func (a *accessEnv) procs() []*proc {
	ps := []*proc{a.device}
	for _, n := range []string{"A", "B", "M", "N", "GM", "X", "C"} {
		if c := a.c(n); c != nil && c.proc != nil {
			ps = append(ps, c.proc)
		}
	}
	return ps
}

// logs renders the fixture's logs (from offs, if given).
func (a *accessEnv) logs(offs map[*proc]int64) string {
	var b strings.Builder
	for _, p := range a.procs() {
		if p == nil {
			continue
		}
		text, what := p.log(), "log"
		if offs != nil {
			text, what = p.logSince(offs[p]), "log during this subtest"
		}
		fmt.Fprintf(&b, "\n---- %s (%s) %s, %s ----\n%s", p.name, p.exitDesc(), what, p.logPath, tail(text, 80, 16<<10))
	}
	return b.String()
}

// watch dumps what the fixture's processes logged during t, if t fails.
func (a *accessEnv) watch(t *testing.T) {
	offs := map[*proc]int64{}
	for _, p := range a.procs() {
		offs[p] = p.logSize()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("access fixture: device %s; %s%s", a.deviceID, a.clientList(), a.logs(offs))
		}
	})
}

// streamLines are the device's "stream" log lines for client on port: the
// denial lines name the client in full, the others by its short ID.
func (a *accessEnv) streamLines(client string, port int) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(a.device.log(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["message"] != "stream" {
			continue
		}
		if fmt.Sprint(m["port"]) != strconv.Itoa(port) {
			continue
		}
		if m["client"] == client || (m["client"] == nil && m["peer"] == client[:8]) {
			out = append(out, m)
		}
	}
	return out
}

func accRaw(m map[string]any) string { b, _ := json.Marshal(m); return string(b) }

// waitStreamLines waits until the device has logged more than before stream
// lines for client on port, and returns the new ones.
func (a *accessEnv) waitStreamLines(client string, port, before int, timeout time.Duration) []map[string]any {
	deadline := time.Now().Add(timeout)
	for {
		lines := a.streamLines(client, port)
		if len(lines) > before || time.Now().After(deadline) {
			// A moment more, so that a second (wrong) line is seen too.
			time.Sleep(100 * time.Millisecond)
			return a.streamLines(client, port)[before:]
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// accCheckDenial checks that lines is exactly one denial of client on port
// for reason.
func accCheckDenial(t *testing.T, lines []map[string]any, client string, port int, reason string) {
	t.Helper()
	if len(lines) != 1 {
		var raw []string
		for _, l := range lines {
			raw = append(raw, accRaw(l))
		}
		t.Errorf("device logged %d stream lines for client %s on port %d, want exactly 1 denial:\n%s",
			len(lines), client, port, strings.Join(raw, "\n"))
		if len(lines) == 0 {
			return
		}
	}
	l := lines[0]
	want := map[string]string{"message": "stream", "outcome": "denied", "client": client,
		"port": strconv.Itoa(port), "reason": reason}
	for k, v := range want {
		if got := fmt.Sprint(l[k]); got != v {
			t.Errorf("device's denial line: %s = %q, want %q\nline: %s", k, got, v, accRaw(l))
		}
	}
	t.Logf("device: %s", accRaw(l))
}

// expectDenied CONNECTs through c's socksd with the raw SOCKS client and
// wants reply 0x02 and one denial line with reason on the device.
func (a *accessEnv) expectDenied(t *testing.T, c *accessClient, port int, reason string) {
	t.Helper()
	before := len(a.streamLines(c.id, port))
	rep, err := socksConnect(c.socks, a.host(), port)
	if rep.Conn != nil {
		rep.Conn.Close()
	}
	if err != nil {
		t.Fatalf("client %s: CONNECT %s:%d: %v", c.name, a.host(), port, err)
	}
	if rep.Code != repNotAllowed {
		t.Fatalf("client %s (%s): CONNECT port %d: reply %s, want 0x02 (denied: %s)", c.name, c.id, port, replyName(rep.Code), reason)
	}
	t.Logf("client %s: CONNECT port %d -> %s in %s", c.name, port, replyName(rep.Code), rep.Elapsed.Round(time.Millisecond))
	accCheckDenial(t, a.waitStreamLines(c.id, port, before, 3*time.Second), c.id, port, reason)
}

// ssh runs `ssh -p PORT -o ProxyCommand=PROXY user@<device>.tunnel echo WORD`.
func (a *accessEnv) ssh(port int, proxy, word string) result {
	return runCmd(40*time.Second, nil, nil, "ssh", "-F", a.e.sshd.clientConf, "-p", strconv.Itoa(port),
		"-o", "ProxyCommand="+proxy, sshUser+"@"+a.host(), "echo "+word)
}

func (a *accessEnv) checkSSH(t *testing.T, port int, proxy, word string) {
	t.Helper()
	r := a.ssh(port, proxy, word)
	if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != word {
		t.Fatalf("ssh -p %d -o ProxyCommand=%q to %s: want %q, got %s", port, proxy, a.host(), word, r)
	}
	t.Logf("ssh -p %d via %q: ok in %s", port, proxy, r.Elapsed.Round(time.Millisecond))
}

func (a *accessEnv) checkCurl(t *testing.T, c *accessClient) {
	t.Helper()
	url := "http://" + a.host() + "/access"
	r := runCmd(40*time.Second, nil, nil, "curl", "-sS", "--max-time", "30", "--socks5-hostname", c.socks, url)
	if want := httpBody(a.host()); r.Code != 0 || string(r.Stdout) != want {
		t.Fatalf("client %s: curl --socks5-hostname %s %s: want body %q, got %s", c.name, c.socks, url, want, r)
	}
	t.Logf("client %s: curl port %d ok in %s", c.name, accHTTP, r.Elapsed.Round(time.Millisecond))
}

func TestAccess(t *testing.T) {
	start := time.Now()
	a := setupAccess(t)
	t.Logf("fixture ready in %s", time.Since(start).Round(time.Millisecond))
	A, B, M := a.c("A"), a.c("B"), a.c("M")

	t.Run("protected/expiring-member-before-expiry", func(t *testing.T) {
		a.watch(t)
		// The control for protected/expired below: X is let in while its
		// credential is valid.
		X := a.c("X")
		if left := time.Until(a.xExpiry); left < 500*time.Millisecond {
			t.Skipf("X's credential expires in %s already (slow setup); no control", left)
		}
		rep, err := socksConnect(X.socks, a.host(), accProtectedSSH)
		if err != nil {
			t.Fatalf("client X: CONNECT port %d: %v", accProtectedSSH, err)
		}
		if rep.Code != repSucceeded {
			t.Fatalf("client X (credential valid until %s): CONNECT port %d: reply %s, want 0x00",
				a.xExpiry.Format(time.RFC3339), accProtectedSSH, replyName(rep.Code))
		}
		banner, err := readLine(rep.Conn, 10*time.Second)
		rep.Conn.Close()
		if !strings.HasPrefix(banner, "SSH-2.0-") {
			t.Fatalf("client X: port %d: want an SSH banner, got %q (%v)", accProtectedSSH, banner, err)
		}
		t.Logf("client X: CONNECT port %d -> 0x00, %s left on its credential", accProtectedSSH, time.Until(a.xExpiry).Round(time.Millisecond))
	})

	t.Run("publishing-line", func(t *testing.T) {
		a.watch(t)
		var pub map[string]any
		for _, line := range strings.Split(a.device.log(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "publishing" {
				pub = m
				break
			}
		}
		if pub == nil {
			t.Fatalf("device never logged a JSON %q line", "publishing")
		}
		for port, mode := range map[int]string{accHTTP: "public", accPrivateSSH: "private", accProtectedSSH: "protected",
			accPPPublic: "public", accPPPrivate: "private", accPPProtected: "protected"} {
			if got := fmt.Sprint(pub[fmt.Sprintf("port_%d", port)]); !strings.HasPrefix(got, mode+" ") {
				t.Errorf("publishing line: port_%d = %q, want %q…\nline: %s", port, got, mode+" ", accRaw(pub))
			}
		}
	})

	t.Run("private/listed-client", func(t *testing.T) {
		a.watch(t)
		a.checkSSH(t, accPrivateSSH, ncProxy(A.socks), "listed-a")
		a.checkCurl(t, A)
	})

	t.Run("private/other-client", func(t *testing.T) {
		a.watch(t)
		before := len(a.streamLines(B.id, accPrivateSSH))
		r := a.ssh(accPrivateSSH, ncProxy(B.socks), "stranger-b")
		if r.Code == 0 || strings.Contains(string(r.Stdout), "stranger-b") {
			t.Fatalf("ssh to the private port as B (not listed) succeeded: %s", r)
		}
		t.Logf("ssh as B via nc -X 5 fails as it should (exit %d): %s", r.Code, strings.TrimSpace(string(r.Stderr)))
		accCheckDenial(t, a.waitStreamLines(B.id, accPrivateSSH, before, 3*time.Second), B.id, accPrivateSSH, "not listed")
		a.expectDenied(t, B, accPrivateSSH, "not listed")
		// The public port is B's as much as anyone's.
		a.checkCurl(t, B)
	})

	t.Run("private/fleet-member-not-listed", func(t *testing.T) {
		a.watch(t)
		a.expectDenied(t, M, accPrivateSSH, "not listed")
	})

	t.Run("protected/member", func(t *testing.T) {
		a.watch(t)
		a.checkSSH(t, accProtectedSSH, ncProxy(M.socks), "member-m")
		proxy := tunnelBin + " --home " + M.home + " connect --relay " + a.relay + " %h %p"
		r := a.ssh(accProtectedSSH, proxy, "member-m-connect")
		if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "member-m-connect" {
			t.Fatalf("ssh -p %d -o ProxyCommand=%q (M's home): %s", accProtectedSSH, proxy, r)
		}
		if s := strings.TrimSpace(string(r.Stderr)); s != "" {
			t.Errorf("tunnel connect not quiet on success:\n%s", tail(s, 20, 4<<10))
		}
		t.Logf("ssh -p %d via tunnel connect --relay (M's home): ok in %s", accProtectedSSH, r.Elapsed.Round(time.Millisecond))
		// A listed client of the private port is no fleet member.
		a.expectDenied(t, A, accProtectedSSH, "not a member")
	})

	t.Run("protected/non-member", func(t *testing.T) {
		a.watch(t)
		N := a.c("N")
		a.expectDenied(t, N, accProtectedSSH, "not a member")
		// tunnel connect says why on stderr and fails.
		before := len(a.streamLines(N.id, accProtectedSSH))
		r := runTunnel(30*time.Second, nil, "--home", N.home, "connect", "--relay", a.relay, a.host(), strconv.Itoa(accProtectedSSH))
		if r.Code == 0 || !strings.Contains(string(r.Stderr), "not a member") {
			t.Errorf("tunnel connect as N to the protected port: want a non-zero exit and %q on stderr, got %s", "not a member", r)
		} else {
			t.Logf("tunnel connect as N: exit %d: %s", r.Code, strings.TrimSpace(string(r.Stderr)))
		}
		accCheckDenial(t, a.waitStreamLines(N.id, accProtectedSSH, before, 3*time.Second), N.id, accProtectedSSH, "not a member")
	})

	t.Run("protected/other-fleet-member", func(t *testing.T) {
		a.watch(t)
		// GM's socksd holds only a credential of fleet G and sends a
		// credential only of the fleet the device asks for (F), so it
		// presents none: to the device GM is no member.
		a.expectDenied(t, a.c("GM"), accProtectedSSH, "not a member")
	})

	t.Run("protected/other-fleet-credential-presented", func(t *testing.T) {
		a.watch(t)
		// A client that does send its fleet G credential to a fleet F
		// device (which the product's clients never do, see above).
		GM := a.c("GM")
		data, err := os.ReadFile(filepath.Join(GM.home, fleet.CertDir, a.fleetG+".cert"))
		if err != nil {
			t.Fatalf("GM's installed credential: %v", err)
		}
		cred, err := fleet.Parse(data)
		if err != nil {
			t.Fatalf("GM's installed credential: %v", err)
		}
		a.expectDeniedPresenting(t, GM, accProtectedSSH, cred.Wire(), "wrong fleet")
	})

	t.Run("protected/malformed-credential", func(t *testing.T) {
		a.watch(t)
		a.expectDeniedPresenting(t, a.c("N"), accProtectedSSH, []byte("not a credential at all"), "malformed credential")
	})

	t.Run("protected/copied-credential", func(t *testing.T) {
		a.watch(t)
		C := a.c("C")
		certDir := filepath.Join(C.home, fleet.CertDir)
		// fleet join refuses a credential issued to another node, and
		// installs nothing.
		r := accFleet(C.home, "join", a.mCert)
		if r.Code == 0 {
			t.Errorf("fleet join of M's credential in C's home: exit 0, want a refusal: %s", r)
		} else if stderr := string(r.Stderr); !strings.Contains(stderr, M.id) || !strings.Contains(stderr, C.id) {
			t.Errorf("fleet join of M's credential in C's home: stderr does not name both M %s and C %s: %q", M.id, C.id, stderr)
		} else {
			t.Logf("fleet join of M's credential in C's home: exit %d: %s", r.Code, strings.TrimSpace(stderr))
		}
		if ents, err := os.ReadDir(certDir); err == nil && len(ents) > 0 {
			t.Errorf("refused fleet join left %d entries in %s", len(ents), certDir)
		}
		if held := accHeld(t, C.home); len(held) != 0 {
			t.Errorf("after a refused fleet join, C's fleet list: %+v, want none", held)
		}

		// Copied by hand, it is sent, and the device sees it names M.
		src := filepath.Join(M.home, fleet.CertDir, a.fleetF+".cert")
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("M's installed credential: %v", err)
		}
		if err := os.MkdirAll(certDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(certDir, a.fleetF+".cert"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		a.expectDenied(t, C, accProtectedSSH, "credential of another member")
		// and ssh through C's socksd fails too.
		if r := a.ssh(accProtectedSSH, ncProxy(C.socks), "copied-c"); r.Code == 0 {
			t.Errorf("ssh -p %d as C with M's copied credential succeeded: %s", accProtectedSSH, r)
		}
	})

	t.Run("proxy-protocol", func(t *testing.T) {
		a.watch(t)
		for _, c := range []struct {
			client *accessClient
			port   int
			access int
		}{
			{A, accPPPublic, 0}, {B, accPPPublic, 0}, {A, accPPPrivate, 1}, {M, accPPProtected, 2},
		} {
			a.checkProxyProtocol(t, c.client, c.port, c.access)
		}
		// The other modes still hold on a PROXY protocol port.
		a.expectDenied(t, B, accPPPrivate, "not listed")
		a.expectDenied(t, a.c("N"), accPPProtected, "not a member")
	})

	t.Run("protected/expired", func(t *testing.T) {
		a.watch(t)
		X := a.c("X")
		// The device compares with its clock to the second: wait until
		// valid_until has passed, plus a margin.
		if d := time.Until(a.xExpiry) + 1100*time.Millisecond; d > 0 {
			t.Logf("waiting %s for X's credential to expire (valid until %s)", d.Round(time.Millisecond), a.xExpiry.Format(time.RFC3339))
			time.Sleep(d)
		}
		held := accHeld(t, X.home)
		if len(held) != 1 || held[0].Status != "expired" {
			t.Errorf("fleet list --json in X's home after expiry: %+v, want one credential with status expired", held)
		}
		a.expectDenied(t, X, accProtectedSSH, "expired")
		// and an expired credential is not installed again.
		r := accFleet(X.home, "join", filepath.Join(filepath.Dir(a.mCert), "x.cert"))
		if r.Code == 0 || !strings.Contains(string(r.Stderr), "expired") {
			t.Errorf("fleet join of an expired credential: want a non-zero exit and %q on stderr, got %s", "expired", r)
		}
	})

	if t.Failed() {
		return
	}
	t.Logf("TestAccess: %s in all", time.Since(start).Round(time.Millisecond))
}

// checkProxyProtocol CONNECTs to port as c and wants the service to have
// read a PROXY v2 header naming c with access byte access, then an echo.
func (a *accessEnv) checkProxyProtocol(t *testing.T, c *accessClient, port, access int) {
	t.Helper()
	rep, err := socksConnect(c.socks, a.host(), port)
	if err != nil {
		t.Fatalf("client %s: CONNECT port %d: %v", c.name, port, err)
	}
	if rep.Code != repSucceeded {
		t.Fatalf("client %s: CONNECT port %d (PROXY protocol): reply %s, want 0x00", c.name, port, replyName(rep.Code))
	}
	defer rep.Conn.Close()
	line, err := readLine(rep.Conn, 10*time.Second)
	if want := fmt.Sprintf("pp ok id=%s access=%d\n", c.id, access); line != want {
		t.Fatalf("client %s, port %d: the service saw %q (%v), want %q", c.name, port, line, err, want)
	}
	word := fmt.Sprintf("ping-%s-%d\n", c.name, port)
	if _, err := io.WriteString(rep.Conn, word); err != nil {
		t.Fatal(err)
	}
	_ = rep.Conn.(*net.TCPConn).CloseWrite()
	rest, err := readAllTimeout(rep.Conn, 10*time.Second)
	if string(rest) != word {
		t.Fatalf("client %s, port %d: echo after the header: got %q (%v), want %q", c.name, port, rest, err, word)
	}
	t.Logf("client %s, port %d: the service read a PROXY v2 header with TLV 0xE0 = %s, 0xE1 = %d; echo ok", c.name, port, c.id, access)
}

var accPPSignature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// accPPHandler reads a PROXY protocol v2 header, answers one line with what it
// found ("pp ok id=ID access=N", or "pp bad: why"), then echoes.
func accPPHandler(c *net.TCPConn) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	id, access, err := accReadProxyV2(c)
	if err != nil {
		fmt.Fprintf(c, "pp bad: %v\n", err)
		return
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "pp ok id=%s access=%d\n", id, access)
	echoHandler(c)
}

// accReadProxyV2 reads a v2 header (PROXY command, AF_UNSPEC) and returns the
// values of TLVs 0xE0 (client ID) and 0xE1 (access mode).
func accReadProxyV2(r io.Reader) (id string, access int, err error) {
	var hdr [16]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", 0, fmt.Errorf("header: %w (got % x)", err, hdr)
	}
	if !bytes.Equal(hdr[:12], accPPSignature) {
		return "", 0, fmt.Errorf("signature % x", hdr[:12])
	}
	if hdr[12] != 0x21 {
		return "", 0, fmt.Errorf("version/command 0x%02x, want 0x21", hdr[12])
	}
	if hdr[13] != 0x00 {
		return "", 0, fmt.Errorf("family 0x%02x, want 0x00 (AF_UNSPEC)", hdr[13])
	}
	n := binary.BigEndian.Uint16(hdr[14:])
	if n > 1024 {
		return "", 0, fmt.Errorf("%d bytes of addresses and TLVs", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return "", 0, fmt.Errorf("TLVs: %w", err)
	}
	access = -1
	for len(body) > 0 {
		if len(body) < 3 {
			return "", 0, fmt.Errorf("truncated TLV % x", body)
		}
		typ, l := body[0], int(binary.BigEndian.Uint16(body[1:3]))
		if len(body) < 3+l {
			return "", 0, fmt.Errorf("TLV 0x%02x of %d bytes, %d left", typ, l, len(body)-3)
		}
		v := body[3 : 3+l]
		switch typ {
		case 0xE0:
			id = string(v)
		case 0xE1:
			if l != 1 {
				return "", 0, fmt.Errorf("TLV 0xE1 of %d bytes, want 1", l)
			}
			access = int(v[0])
		}
		body = body[3+l:]
	}
	if !idRE.MatchString(id) {
		return "", 0, fmt.Errorf("TLV 0xE0 = %q, want a 52-character client ID", id)
	}
	if access < 0 {
		return "", 0, errors.New("no TLV 0xE1")
	}
	return id, access, nil
}

// expectDeniedPresenting opens port as the node of c's home with a client
// built from the product's own dialer that presents cred whatever fleet the
// device asks for, and wants a denial for reason on both ends.
func (a *accessEnv) expectDeniedPresenting(t *testing.T, c *accessClient, port int, cred []byte, reason string) {
	t.Helper()
	before := len(a.streamLines(c.id, port))
	var logBuf bytes.Buffer
	err := accDialPresenting(a.relay, c.home, a.deviceID, port, cred, zerolog.New(zerolog.SyncWriter(&logBuf)))
	if err == nil {
		t.Fatalf("client %s presenting a credential (%d bytes) to port %d: stream opened, want denied (%s)", c.name, len(cred), port, reason)
	}
	if !errors.Is(err, stream.ErrDenied) || socks.ReplyCode(err) != repNotAllowed {
		t.Fatalf("client %s presenting a credential to port %d: %v (SOCKS reply %s), want denied: %s\nclient log:\n%s",
			c.name, port, err, replyName(socks.ReplyCode(err)), reason, tail(logBuf.String(), 30, 8<<10))
	}
	if !strings.Contains(err.Error(), reason) {
		t.Errorf("client %s: error %q does not carry the device's reason %q", c.name, err, reason)
	}
	t.Logf("client %s: %v (SOCKS reply %s)", c.name, err, replyName(socks.ReplyCode(err)))
	accCheckDenial(t, a.waitStreamLines(c.id, port, before, 3*time.Second), c.id, port, reason)
}

// accDialPresenting starts a node the way socksd does (cmd/roles) with a
// credential source that always returns cred, and opens one stream to
// device:port.
func accDialPresenting(relay, home, device string, port int, cred []byte, log zerolog.Logger) error {
	key, err := identity.LoadOrCreate(home)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	devID, err := identity.ParseID(device)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	ra, err := resolver.ParseRelayAddr(relay)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := roles.StartNode(ctx, roles.NodeConfig{Key: key, Listen: "127.0.0.1:0", Relays: []resolver.RelayAddr{ra},
		Credentials: func(identity.ID) []byte { return cred }, Log: log})
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	defer n.Close()
	d := n.Dialer
	s, err := d.DialDevice(ctx, devID, uint16(port))
	if s != nil {
		s.Abort()
	}
	return err
}

// publishing nothing: every bad access flag exits 2 with a clear message
// before anything starts — no datagram to the relay, nothing in the home.
func TestAccessBadInput(t *testing.T) {
	relayPC, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer relayPC.Close()
	var datagrams sync.WaitGroup
	var got []string
	var gotMu sync.Mutex
	datagrams.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := relayPC.ReadFrom(buf)
			if err != nil {
				return
			}
			gotMu.Lock()
			got = append(got, fmt.Sprintf("%d bytes from %s", n, from))
			gotMu.Unlock()
		}
	})
	relay := relayPC.LocalAddr().String()
	client := tunnelID(t, t.TempDir())
	fleetID := accFleetCreate(t, t.TempDir())

	cases := []struct {
		name string
		args []string
		want []string // each must appear in stderr
	}{
		{"private-bad-id", []string{"-private", "22,not-an-id"}, []string{"not-an-id"}},
		{"private-no-id", []string{"-private", "22"}, []string{"SPEC,ID"}},
		{"private-one-bad-id", []string{"-private", "22," + client + ",zzz"}, []string{"zzz"}},
		{"protected-no-fleet", []string{"-protected", "22"}, []string{"--fleet"}},
		{"fleet-garbage", []string{"--fleet", "garbage", "-protected", "22"}, []string{"--fleet", "garbage"}},
		{"proxy-protocol-unpublished", []string{"-public", "22", "-proxy-protocol", "99"}, []string{"99", "not published"}},
		{"proxy-protocol-not-a-port", []string{"-public", "22", "-proxy-protocol", "ssh"}, []string{"ssh"}},
		{"same-port-public-private", []string{"-public", "22", "-private", "22," + client}, []string{"22", "twice"}},
		{"same-port-private-protected", []string{"--fleet", fleetID, "-private", "2222:22," + client, "-protected", "22"}, []string{"22", "twice"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			home := filepath.Join(t.TempDir(), "home")
			args := append([]string{"--home", home, "publish", "--relay", relay}, c.args...)
			r := runTunnel(10*time.Second, nil, args...)
			label := "tunnel " + strings.Join(args, " ")
			if r.TimedOut {
				t.Fatalf("%s: still running after 10s (bad input accepted?): %s", label, r)
			}
			if r.Code != 2 {
				t.Errorf("%s: exit code %d, want 2: %s", label, r.Code, r)
			}
			stderr := string(r.Stderr)
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("%s: stderr does not mention %q: %q", label, w, tail(stderr, 20, 2<<10))
				}
			}
			if len(r.Stdout) != 0 {
				t.Errorf("%s: printed %q on stdout", label, r.Stdout)
			}
			if ents, err := os.ReadDir(home); err == nil && len(ents) > 0 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("%s: left %v in its home; a bad flag must apply nothing", label, names)
			}
			t.Logf("%s -> %d: %s", label, r.Code, firstLine(stderr, "tunnel:"))
		})
	}
	time.Sleep(200 * time.Millisecond)
	relayPC.Close()
	datagrams.Wait()
	if len(got) > 0 {
		t.Errorf("the relay address got %d datagrams from publish runs with bad flags (something started): %v", len(got), got)
	}
}

// TestAccessFleetBadInput: fleet join of garbage or of a truncated
// credential and fleet add of a bad member ID exit 2 and change nothing.
func TestAccessFleetBadInput(t *testing.T) {
	admin := t.TempDir()
	fleetID := accFleetCreate(t, admin)
	home := t.TempDir()
	id := tunnelID(t, home)
	dir := t.TempDir()

	good := accMustFleet(t, admin, "add", id).Stdout
	if !strings.HasPrefix(string(good), "ssh-ed25519-cert-v01@openssh.com ") {
		t.Fatalf("fleet add printed %q, want one OpenSSH certificate line", good)
	}
	// The certificate's base64 less its last 8 characters: still valid
	// base64, but a certificate cut short (its signature).
	fields := strings.Fields(string(good))
	shortB64 := []byte(fields[0] + " " + fields[1][:len(fields[1])-8] + "\n")
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	listEmpty := func(t *testing.T, after string) {
		t.Helper()
		r := accMustFleet(t, home, "list")
		if s := strings.TrimSpace(string(r.Stdout)); s != "" {
			t.Errorf("after %s, fleet list printed %q, want nothing", after, s)
		}
		if !strings.Contains(string(r.Stderr), "no fleet credentials") {
			t.Errorf("after %s, fleet list stderr %q, want it to say no credentials are held", after, r.Stderr)
		}
		if ents, err := os.ReadDir(filepath.Join(home, fleet.CertDir)); err == nil && len(ents) > 0 {
			t.Errorf("after %s, %s holds %d entries", after, filepath.Join(home, fleet.CertDir), len(ents))
		}
		if t.Failed() { // so that the next case starts from an empty home
			_ = os.RemoveAll(filepath.Join(home, fleet.CertDir))
		}
	}

	cases := []struct {
		name  string
		file  string
		stdin []byte
		want  string
	}{
		{name: "garbage-file", file: write("garbage.cert", append([]byte("this is not a credential \x00\xff "), random(64)...)), want: "garbage.cert"},
		{name: "empty-file", file: write("empty.cert", nil), want: "empty.cert"},
		{name: "truncated", file: write("truncated.cert", good[:len(good)/2]), want: "truncated.cert"},
		{name: "truncated-base64", file: write("short.cert", shortB64), want: "short.cert"},
		{name: "garbage-stdin", file: "-", stdin: []byte("ssh-ed25519-cert-v01@openssh.com AAAAnot-base64!!\n"), want: "standard input"},
	}
	for _, c := range cases {
		t.Run("join-"+c.name, func(t *testing.T) {
			var stdin io.Reader
			if c.stdin != nil {
				stdin = bytes.NewReader(c.stdin)
			}
			r := runCmd(20*time.Second, nil, stdin, tunnelBin, "--home", home, "fleet", "join", c.file)
			if r.Code != 2 {
				t.Errorf("fleet join %s: exit code %d, want 2: %s", c.file, r.Code, r)
			}
			if !strings.Contains(string(r.Stderr), c.want) {
				t.Errorf("fleet join %s: stderr does not mention %q: %q", c.file, c.want, r.Stderr)
			}
			if len(r.Stdout) != 0 {
				t.Errorf("fleet join %s: printed %q on stdout", c.file, r.Stdout)
			}
			t.Logf("fleet join %s -> %d: %s", c.name, r.Code, firstLine(string(r.Stderr), "tunnel:"))
			listEmpty(t, "fleet join "+c.name)
		})
	}

	t.Run("add-bad-member", func(t *testing.T) {
		for _, bad := range []string{"not-an-id", id[:51], id + "y"} {
			r := accFleet(admin, "add", bad)
			if r.Code != 2 {
				t.Errorf("fleet add %s: exit code %d, want 2: %s", bad, r.Code, r)
			}
			if len(r.Stdout) != 0 {
				t.Errorf("fleet add %s: printed %q on stdout, want no credential", bad, r.Stdout)
			}
			if !strings.Contains(string(r.Stderr), "MEMBER_ID") {
				t.Errorf("fleet add %s: stderr does not say MEMBER_ID is wrong: %q", bad, r.Stderr)
			}
			t.Logf("fleet add %s -> %d: %s", bad, r.Code, firstLine(string(r.Stderr), "tunnel:"))
		}
	})

	// The control: the untruncated credential joins.
	t.Run("join-good", func(t *testing.T) {
		r := accMustFleet(t, home, "join", write("good.cert", good))
		held := accHeld(t, home)
		if len(held) != 1 || held[0].Fleet != fleetID || held[0].Member != id || held[0].Status != "valid" {
			t.Errorf("after joining the good credential: fleet list %+v, want one valid credential of %s for %s", held, fleetID, id)
		}
		t.Logf("fleet join good: %s", strings.TrimSpace(string(r.Stdout)))
	})
}

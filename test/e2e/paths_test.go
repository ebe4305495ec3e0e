//go:build linux

package e2e

// Direct paths through real NATs: a relay on the "internet", a device with
// a real sshd behind one NAT, socksd and ssh behind the other (see
// netns_test.go for the topology). These need root; they say why they skip.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// natWorld is the product running on a Topology.
type natWorld struct {
	tp        *Topology
	sshd      *sshServer
	relay     *proc
	relayHome string
	device    *proc
	devHome   string
	deviceID  string
	socksd    *proc
	cliHome   string
	// relayListen is the relay's --listen (empty: PubIP:natRelayPort).
	relayListen string
	// cliNS is the namespace socksd and ssh run in (empty: tp.Cli).
	cliNS string
}

// cli is the namespace socksd and ssh run in.
func (w *natWorld) cli() string {
	if w.cliNS != "" {
		return w.cliNS
	}
	return w.tp.Cli
}

const natRelayPort = 7443

func startNATWorld(t *testing.T, nat1, nat2 NATMode, socksArgs ...string) *natWorld {
	t.Helper()
	needNetns(t)
	requireSystem(t)
	return startNATWorldOn(t, NewTopology(t, nat1, nat2), socksArgs...)
}

// startNATWorldOn is startNATWorld on a topology the caller built (and
// perhaps extended, as AddRoamNAT does): the relay in pub, on its usual
// port.
func startNATWorldOn(t *testing.T, tp *Topology, socksArgs ...string) *natWorld {
	t.Helper()
	relayAddr := fmt.Sprintf("%s:%d", tp.PubIP, natRelayPort)
	return startWorld(t, tp, worldRelay{listen: relayAddr, dev: relayAddr, cli: relayAddr}, socksArgs...)
}

// worldRelay is where a world's relay listens and where the device and
// the client reach it.
type worldRelay struct{ listen, dev, cli string }

// startWorld runs the product on tp: the relay in pub, the device with a
// real sshd in dev, socksd in cli; it returns once both registered.
func startWorld(t *testing.T, tp *Topology, relay worldRelay, socksArgs ...string) *natWorld {
	t.Helper()
	w := &natWorld{tp: tp, relayListen: relay.listen}
	s, err := startSSHD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	w.sshd = s
	// The same sshd configuration, run inside the device's namespace (its
	// own loopback, so the same port is free there).
	tp.Start(t, tp.Dev, "sshd-dev", "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(s.dir, "sshd_config"), "-o", "PidFile=none")
	w.relayHome = t.TempDir()
	w.relay = w.startRelay(t)
	w.devHome = t.TempDir()
	w.deviceID = tunnelID(t, w.devHome)
	w.device = tp.Start(t, tp.Dev, "publish", tunnelBin, tunnelArgs(w.devHome, "publish", "--relay", relay.dev,
		"-public", fmt.Sprintf("127.0.0.1:%d:22", s.port))...)
	w.cliHome = t.TempDir()
	args := append([]string{"socksd", "--relay", relay.cli, "--listen", "127.0.0.1:1080"}, socksArgs...)
	w.socksd = tp.Start(t, tp.Cli, "socksd", tunnelBin, tunnelArgs(w.cliHome, args...)...)
	if !w.device.waitLog("registered with relay", 1, 15*time.Second) {
		t.Fatalf("device did not register:\n%s", w.device.log())
	}
	if !w.socksd.waitLog("registered with relay", 1, 15*time.Second) {
		t.Fatalf("socksd did not register:\n%s", w.socksd.log())
	}
	return w
}

func (w *natWorld) startRelay(t *testing.T) *proc {
	listen := w.relayListen
	if listen == "" {
		listen = fmt.Sprintf("%s:%d", w.tp.PubIP, natRelayPort)
	}
	return w.tp.Start(t, w.tp.Pub, "relay", tunnelBin, tunnelArgs(w.relayHome, "relay", "--listen", listen)...)
}

// ssh runs a command on the device from the client's namespace.
func (w *natWorld) ssh(timeout time.Duration, remote string) result {
	return w.tp.Run(timeout, w.cli(), "ssh", "-F", w.sshd.clientConf, "-o", "ProxyCommand=nc -X 5 -x 127.0.0.1:1080 %h %p",
		sshUser+"@"+w.deviceID+".tunnel", remote)
}

// sshStream starts a long-running ssh command and returns its stdout lines.
func (w *natWorld) sshStream(t *testing.T, ctx context.Context, remote string) (<-chan string, func() error) {
	t.Helper()
	cmd := w.tp.Exec(ctx, w.cli(), "ssh", "-F", w.sshd.clientConf, "-o", "ProxyCommand=nc -X 5 -x 127.0.0.1:1080 %h %p",
		sshUser+"@"+w.deviceID+".tunnel", remote)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines, func() error {
		err := cmd.Wait()
		if err != nil {
			return fmt.Errorf("%w: %s", err, stderr.String())
		}
		return nil
	}
}

type peerStatus struct {
	ID       string `json:"id"`
	Path     string `json:"path"`
	Via      string `json:"via"`
	BytesOut uint64 `json:"bytes_out"`
	BytesIn  uint64 `json:"bytes_in"`
}

// path asks the client's socksd which path its connection to the device
// takes: "direct", "relayed", or "" if there is none.
func (w *natWorld) path(t *testing.T) (string, string) {
	t.Helper()
	p := w.peer(t)
	return p.Path, p.Via
}

// peer is the client socksd's status of its connection to the device (the
// zero peerStatus if there is none).
func (w *natWorld) peer(t *testing.T) peerStatus {
	t.Helper()
	r := runTunnel(10*time.Second, nil, "--home", w.cliHome, "status", "--json")
	if r.Code != 0 {
		t.Fatalf("tunnel status: %s", r)
	}
	var docs []struct {
		Peers []peerStatus `json:"peers"`
	}
	if err := json.Unmarshal(r.Stdout, &docs); err != nil {
		t.Fatalf("tunnel status --json: %v\n%s", err, r.Stdout)
	}
	for _, d := range docs {
		for _, p := range d.Peers {
			if p.ID == w.deviceID {
				return p
			}
		}
	}
	return peerStatus{}
}

func (w *natWorld) waitPath(t *testing.T, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got, via := w.path(t)
		if got == want {
			t.Logf("path %s via %s after %v", got, via, time.Since(start).Round(10*time.Millisecond))
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("path is %q after %v, want %q\nsocksd:\n%s\ndevice:\n%s", got, timeout, want,
				tail(w.socksd.log(), 30, 8<<10), tail(w.device.log(), 30, 8<<10))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// firstCommand checks that the first ssh command succeeds within a few
// seconds of both sides being registered.
func (w *natWorld) firstCommand(t *testing.T) {
	t.Helper()
	start := time.Now()
	r := w.ssh(30*time.Second, "echo first")
	if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "first" {
		t.Fatalf("first ssh: %s\nsocksd:\n%s", r, tail(w.socksd.log(), 30, 8<<10))
	}
	d := time.Since(start)
	t.Logf("first ssh command took %v", d.Round(time.Millisecond))
	if d > 5*time.Second {
		t.Fatalf("first ssh command took %v, want a few seconds", d)
	}
}

func TestPathConeDirect(t *testing.T) {
	w := startNATWorld(t, NATCone, NATCone)
	w.firstCommand(t)
	w.waitPath(t, "direct", 15*time.Second)
	rx0, tx0 := w.tp.Counters(t)
	const size = 64 << 20
	r := w.ssh(120*time.Second, fmt.Sprintf("head -c %d /dev/zero", size))
	if r.Code != 0 || len(r.Stdout) != size {
		t.Fatalf("64 MiB download: %d bytes, %s", len(r.Stdout), r)
	}
	rx1, tx1 := w.tp.Counters(t)
	carried := (rx1 - rx0) + (tx1 - tx0)
	t.Logf("relay interface carried %d bytes during a %d-byte transfer (%.2f%%)", carried, size, 100*float64(carried)/size)
	if carried > size/10 {
		t.Fatalf("relay carried %d bytes (%.1f%%) of a direct transfer, want < 10%%", carried, 100*float64(carried)/size)
	}
}

func TestPathSymmetricRelayed(t *testing.T) {
	w := startNATWorld(t, NATSymmetric, NATSymmetric)
	w.firstCommand(t)
	r := w.ssh(60*time.Second, "head -c 4194304 /dev/zero | sha256sum")
	if r.Code != 0 {
		t.Fatalf("transfer: %s", r)
	}
	time.Sleep(3 * time.Second) // punching had its chance
	if p, _ := w.path(t); p != "relayed" {
		t.Fatalf("path %q behind symmetric NATs, want relayed", p)
	}
}

// An ssh session survives the relay's death once it runs on a direct
// path — including one opened while direct UDP was blocked. Each case
// waits out a 20 s session in its own topology, so the two run side by
// side.
func TestPathSurvivesRelayDeath(t *testing.T) {
	for _, blocked := range []bool{false, true} {
		t.Run(fmt.Sprintf("opened-while-blocked=%v", blocked), func(t *testing.T) {
			t.Parallel()
			w := startNATWorld(t, NATCone, NATCone)
			if blocked {
				w.tp.BlockDirect(t, true)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			const n = 40
			lines, wait := w.sshStream(t, ctx, fmt.Sprintf("for i in $(seq %d); do echo $i; sleep 0.5; done", n))
			select {
			case l := <-lines:
				if l != "1" {
					t.Fatalf("first line %q", l)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("session produced nothing")
			}
			if blocked {
				time.Sleep(2 * time.Second)
				if p, _ := w.path(t); p != "relayed" {
					t.Fatalf("path %q while direct UDP is blocked, want relayed", p)
				}
				w.tp.BlockDirect(t, false)
			}
			w.waitPath(t, "direct", 20*time.Second)
			w.relay.kill9()
			t.Log("relay killed")
			got := 1
			for l := range lines {
				got++
				if l != strconv.Itoa(got) {
					t.Fatalf("line %d is %q", got, l)
				}
			}
			if err := wait(); err != nil {
				t.Fatalf("session ended with %v after %d lines", err, got)
			}
			if got != n {
				t.Fatalf("session gave %d lines, want %d", got, n)
			}
			// New streams to the connected device need no relay.
			if r := w.ssh(30*time.Second, "echo again"); r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "again" {
				t.Fatalf("new session without a relay: %s", r)
			}
		})
	}
}

// A NAT that forgets its mappings (conntrack -F) breaks nothing for long.
// Each case waits out a 15 s session in its own topology, so the two run
// side by side.
func TestPathConntrackFlush(t *testing.T) {
	for _, mode := range []NATMode{NATCone, NATSymmetric} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			w := startNATWorld(t, mode, mode)
			w.firstCommand(t)
			if mode == NATCone {
				w.waitPath(t, "direct", 15*time.Second)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			const n = 30
			lines, wait := w.sshStream(t, ctx, fmt.Sprintf("for i in $(seq %d); do echo $i; sleep 0.5; done", n))
			<-lines
			w.tp.FlushConntrack(t, w.tp.NAT1)
			w.tp.FlushConntrack(t, w.tp.NAT2)
			t.Log("conntrack flushed in both NATs")
			got := 1
			for range lines {
				got++
			}
			if err := wait(); err != nil || got != n {
				t.Fatalf("session after the flush: %d lines, %v", got, err)
			}
			if r := w.ssh(30*time.Second, "echo after-flush"); r.Code != 0 {
				t.Fatalf("new session after the flush: %s", r)
			}
		})
	}
}

// 1 % loss and 50 ms of round trip do not break a transfer. The loss
// bounds its speed (~40 s each way here), not the CPU, so it runs beside
// TestFreeze, which sleeps (t.Parallel: after the sequential tests).
func TestPathLossDelay(t *testing.T) {
	t.Parallel()
	w := startNATWorld(t, NATCone, NATCone)
	w.tp.AddLossDelay(t, w.tp.NAT1, 0.01, 25*time.Millisecond)
	w.firstCommand(t)
	const size = 16 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>11)
	}
	want := sha256.Sum256(data)
	f := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(f, data, 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	remote := fmt.Sprintf("blob-%d", time.Now().UnixNano())
	up := w.tp.Run(180*time.Second, w.tp.Cli, "sh", "-c",
		fmt.Sprintf("ssh -F %s -o 'ProxyCommand=nc -X 5 -x 127.0.0.1:1080 %%h %%p' %s@%s.tunnel 'cat > %s && sha256sum %s' < %s",
			w.sshd.clientConf, sshUser, w.deviceID, remote, remote, f))
	if up.Code != 0 || !strings.HasPrefix(string(up.Stdout), hex.EncodeToString(want[:])) {
		t.Fatalf("16 MiB upload with loss and delay: %s", up)
	}
	t.Logf("16 MiB up with 1%% loss, 50 ms RTT: %v", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	down := w.ssh(180*time.Second, "cat "+remote+" && rm -f "+remote)
	sum := sha256.Sum256(down.Stdout)
	if down.Code != 0 || sum != want {
		t.Fatalf("16 MiB download with loss and delay: %d bytes, %s", len(down.Stdout), down)
	}
	t.Logf("16 MiB down with 1%% loss, 50 ms RTT: %v", time.Since(start).Round(time.Millisecond))
}

// A client whose home link has the IPv6 minimum MTU, 1280 bytes, as
// WireGuard and Tailscale interfaces have. Our datagrams are larger (an
// inner packet of 1400 bytes in a frame, 1429–1437 bytes on the wire), so
// they must be fragmented on the way. That needs plain sends where a GSO
// write is refused as too big for the path (the kernel segments but never
// fragments), and no DF-and-ignore-ICMP (IP_PMTUDISC_PROBE) on a node's
// socket, which quic-go's capability probes would set on the socket they
// probe. Before both, 4 MiB took 30–80 s here, or failed.
func TestPathSmallMTU(t *testing.T) {
	for _, c := range []struct {
		nat  NATMode
		path string
	}{{NATCone, "direct"}, {NATSymmetric, "relayed"}} {
		t.Run(c.path, func(t *testing.T) {
			w := startNATWorld(t, c.nat, c.nat)
			w.tp.mustHost(t, netnsTools.ip, "-n", w.tp.Cli, "link", "set", hostIf, "mtu", "1280")
			w.tp.mustHost(t, netnsTools.ip, "-n", w.tp.NAT2, "link", "set", lanIf, "mtu", "1280")
			w.firstCommand(t)
			if c.path == "direct" {
				w.waitPath(t, "direct", 15*time.Second)
			}
			const size = 4 << 20
			start := time.Now()
			down := w.ssh(60*time.Second, fmt.Sprintf("head -c %d /dev/zero", size))
			if down.Code != 0 || len(down.Stdout) != size {
				t.Fatalf("4 MiB down over a 1280-byte link: %d bytes, %s", len(down.Stdout), down)
			}
			t.Logf("4 MiB down: %v", time.Since(start).Round(time.Millisecond))
			start = time.Now()
			before := w.peer(t).BytesOut
			up := w.tp.Run(60*time.Second, w.tp.Cli, "sh", "-c",
				fmt.Sprintf("head -c %d /dev/zero | ssh -F %s -o 'ProxyCommand=nc -X 5 -x 127.0.0.1:1080 %%h %%p' %s@%s.tunnel 'wc -c'",
					size, w.sshd.clientConf, sshUser, w.deviceID))
			if up.Code != 0 || strings.TrimSpace(string(up.Stdout)) != strconv.Itoa(size) {
				t.Fatalf("4 MiB up over a 1280-byte link: %s", up)
			}
			sent := w.peer(t).BytesOut - before
			t.Logf("4 MiB up: %v, socksd sent %d bytes", time.Since(start).Round(time.Millisecond), sent)
			// Runs refused as too big and never resent one by one show as
			// retransmissions: they took 30–80 s and many times the bytes.
			if sent > size*3/2 {
				t.Fatalf("socksd sent %d bytes for a 4 MiB upload: more than 1.5× (lost runs retransmitted)", sent)
			}
			if p, _ := w.path(t); p != c.path {
				t.Fatalf("path %q after the transfers, want %q", p, c.path)
			}
		})
	}
}

// Local-network shortcut: a client on the device's side of the NAT (here
// in the device's own network) reaches it on its local address, not
// through the NAT's public one.
func TestPathLocalShortcut(t *testing.T) {
	w := startNATWorld(t, NATCone, NATCone)
	home := t.TempDir()
	lan := w.tp.Start(t, w.tp.Dev, "socksd-lan", tunnelBin, tunnelArgs(home, "socksd", "--relay",
		fmt.Sprintf("%s:%d", w.tp.PubIP, natRelayPort), "--listen", "127.0.0.1:1080")...)
	if !lan.waitLog("registered with relay", 1, 15*time.Second) {
		t.Fatalf("LAN socksd did not register:\n%s", lan.log())
	}
	r := w.tp.Run(30*time.Second, w.tp.Dev, "ssh", "-F", w.sshd.clientConf, "-o", "ProxyCommand=nc -X 5 -x 127.0.0.1:1080 %h %p",
		sshUser+"@"+w.deviceID+".tunnel", "echo lan")
	if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "lan" {
		t.Fatalf("ssh on the LAN: %s", r)
	}
	lanWorld := &natWorld{tp: w.tp, deviceID: w.deviceID, cliHome: home, socksd: lan, device: w.device}
	lanWorld.waitPath(t, "direct", 15*time.Second)
	if _, via := lanWorld.path(t); !strings.HasPrefix(via, w.tp.DevIP+":") {
		t.Fatalf("LAN path via %s, want the device's local address %s", via, w.tp.DevIP)
	}
}

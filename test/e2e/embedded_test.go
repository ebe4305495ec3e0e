//go:build linux

package e2e

// socksd's embedded rendezvous node serving other machines (the README's
// two-machine setup: `tunnel socksd --relay-listen 0.0.0.0:7443` on the
// machine you type on, `tunnel publish --relay THAT-HOST:7443` on the
// device), on the namespace topology of netns_test.go: socksd on pub, the
// device behind nat1. socksd's node reaches its relay over loopback, yet
// the path to the device must end direct (transport/localrelay.go).

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startEmbeddedWorld runs socksd with its embedded rendezvous node on
// 0.0.0.0:natRelayPort in pub, ssh beside it, and the device with a real
// sshd in dev, registered with that node at pub's address; it returns once
// both registered. tp.Cli and nat2 stay idle.
func startEmbeddedWorld(t *testing.T, tp *Topology) *natWorld {
	t.Helper()
	s, err := startSSHD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.stop)
	w := &natWorld{tp: tp, sshd: s, cliNS: tp.Pub}
	w.cliHome = t.TempDir()
	w.socksd = tp.Start(t, tp.Pub, "socksd", tunnelBin, tunnelArgs(w.cliHome, "socksd", "--listen", "127.0.0.1:1080",
		"--relay-listen", fmt.Sprintf("0.0.0.0:%d", natRelayPort))...)
	if !w.socksd.waitLog("registered with relay", 1, 15*time.Second) {
		t.Fatalf("socksd did not register with its own relay:\n%s", w.socksd.log())
	}
	w.startDevice(t, tp.Dev, "device", fmt.Sprintf("%s:%d", tp.PubIP, natRelayPort))
	return w
}

// startDevice runs a real sshd (the world's configuration) and a device
// publishing it in ns, registered with relay, and makes it the world's
// device.
func (w *natWorld) startDevice(t *testing.T, ns, label, relay string) {
	t.Helper()
	w.tp.Start(t, ns, "sshd-"+label, "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(w.sshd.dir, "sshd_config"), "-o", "PidFile=none")
	home := t.TempDir()
	w.deviceID = tunnelID(t, home)
	w.device = w.tp.Start(t, ns, label, tunnelBin, tunnelArgs(home, "publish", "--relay", relay,
		"-public", fmt.Sprintf("127.0.0.1:%d:22", w.sshd.port))...)
	if !w.device.waitLog("registered with relay", 1, 15*time.Second) {
		t.Fatalf("%s did not register:\n%s", label, w.device.log())
	}
}

// udpPortBytes counts, from now on, the IP bytes of UDP port port that
// ns sends and receives on its internet interface (its loopback left
// out); the returned function reads the count.
func (tp *Topology) udpPortBytes(t *testing.T, ns string, port int) func() uint64 {
	t.Helper()
	tag := "tnl-count-" + strconv.Itoa(port)
	p := strconv.Itoa(port)
	tp.must(t, ns, netnsTools.iptables, "-w", "-I", "INPUT", "-i", wanIf, "-p", "udp", "--dport", p, "-m", "comment", "--comment", tag)
	tp.must(t, ns, netnsTools.iptables, "-w", "-I", "OUTPUT", "-o", wanIf, "-p", "udp", "--sport", p, "-m", "comment", "--comment", tag)
	return func() uint64 {
		var sum uint64
		for _, chain := range []string{"INPUT", "OUTPUT"} {
			r := tp.must(t, ns, netnsTools.iptables, "-w", "-nvx", "-L", chain)
			found := false
			for _, line := range strings.Split(string(r.Stdout), "\n") {
				if !strings.Contains(line, tag) {
					continue
				}
				f := strings.Fields(line) // pkts bytes target…
				n, err := strconv.ParseUint(f[1], 10, 64)
				if err != nil {
					t.Fatalf("iptables -L %s in %s: %q: %v", chain, ns, line, err)
				}
				sum, found = sum+n, true
			}
			if !found {
				t.Fatalf("iptables -L %s in %s: no rule %s:\n%s", chain, ns, tag, r.Stdout)
			}
		}
		return sum
	}
}

// The path through socksd's embedded rendezvous node, socksd on the public
// host and the device behind a cone or a symmetric NAT, ends direct, with
// the relay's port carrying under 10 % of a transfer (the device's pings
// to socksd's public address open its NAT, whatever its mapping). A device
// on socksd's own machine, registered with it over loopback, goes direct
// over loopback (once: it does not depend on the NAT).
func TestPathEmbeddedRelay(t *testing.T) {
	for _, nat := range []NATMode{NATCone, NATSymmetric} {
		t.Run("device-"+string(nat), func(t *testing.T) {
			t.Parallel()
			embeddedRelayDirect(t, nat)
		})
	}
}

// embeddedRelayDirect is TestPathEmbeddedRelay with the device behind a
// NAT of mode nat.
func embeddedRelayDirect(t *testing.T, nat NATMode) {
	needNetns(t)
	requireSystem(t)
	tp := NewTopology(t, nat, NATCone)
	w := startEmbeddedWorld(t, tp)
	relayBytes := tp.udpPortBytes(t, tp.Pub, natRelayPort)
	start := time.Now()
	w.firstCommand(t)
	w.waitPath(t, "direct", 15*time.Second)
	toDirect := time.Since(start)
	if _, via := w.path(t); !strings.HasPrefix(via, tp.NAT1IP+":") {
		t.Fatalf("direct via %s, want the device's NAT %s", via, tp.NAT1IP)
	}
	const size = 32 << 20
	// The connection started on the relay: its handshake crossed the port,
	// so the count is seen to count.
	b0 := relayBytes()
	if b0 == 0 {
		t.Fatal("the relay port counted nothing, though the connection started relayed")
	}
	t.Logf("relay port carried %d bytes until the path was direct", b0)
	r := w.ssh(120*time.Second, fmt.Sprintf("head -c %d /dev/zero", size))
	if r.Code != 0 || len(r.Stdout) != size {
		t.Fatalf("32 MiB download: %d bytes, %s", len(r.Stdout), r)
	}
	carried := relayBytes() - b0
	p, via := w.path(t)
	t.Logf("embedded relay, device behind a %s NAT: path %s via %s, direct %v after the first command started; "+
		"relay port carried %d bytes of %d (%.2f%%)", nat, p, via, toDirect.Round(10*time.Millisecond), carried, size, 100*float64(carried)/size)
	if carried >= size/10 {
		t.Fatalf("relay port carried %d bytes (%.1f%%) of a direct transfer, want < 10%%", carried, 100*float64(carried)/size)
	}
	if p != "direct" {
		t.Fatalf("path %q after the transfer, want direct", p)
	}

	if nat != NATCone {
		return
	}
	// A device on socksd's machine, as `make run` prints it: its relay on
	// loopback, so it offers loopback only, and the path is loopback.
	local := &natWorld{tp: tp, sshd: w.sshd, cliNS: tp.Pub, cliHome: w.cliHome, socksd: w.socksd}
	local.startDevice(t, tp.Pub, "device-local", fmt.Sprintf("127.0.0.1:%d", natRelayPort))
	local.firstCommand(t)
	local.waitPath(t, "direct", 15*time.Second)
	if _, via := local.path(t); !strings.HasPrefix(via, "127.0.0.1:") {
		t.Fatalf("same-machine device direct via %s, want loopback", via)
	}
}

// `make run`'s flow, on this machine: socksd's embedded rendezvous node on
// loopback only, the device registered with it there. The path ends direct
// over loopback, as it did before relays beyond loopback were told apart.
func TestPathEmbeddedRelayLoopbackOnly(t *testing.T) {
	e := getEnv(t)
	if err := e.sshd.checkEcho(30*time.Second, nil, e.ncProxy(), e.host(), "loopback"); err != nil {
		t.Fatal(err)
	}
	w := &natWorld{cliHome: e.socksHome, deviceID: e.deviceID, socksd: e.socksd, device: e.device}
	w.waitPath(t, "direct", 15*time.Second)
	if _, via := w.path(t); !strings.HasPrefix(via, "127.0.0.1:") && !strings.HasPrefix(via, "[::1]:") {
		t.Fatalf("direct via %s, want loopback", via)
	}
}

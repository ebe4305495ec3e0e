//go:build linux

package e2e

// Tests of the NAT harness itself (netns_test.go): the topology routes and
// masquerades as described, hole punching works between cone NATs and fails
// between symmetric ones (the physics the product relies on), and each knob
// (BlockDirect, FlushConntrack, Counters, AddLossDelay) does what it says.
// Everything runs inside namespaces made here, on TEST-NET addresses.

import (
	"context"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rv is the rendezvous server's address on pub, port p.
func (tp *Topology) rv(p int) string { return net.JoinHostPort(tp.PubIP, strconv.Itoa(p)) }

func hostOf(t *testing.T, hostport string) string {
	t.Helper()
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("address %q: %v", hostport, err)
	}
	return h
}

func portOf(t *testing.T, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("address %q: %v", hostport, err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

func TestNetnsTopology(t *testing.T) {
	tp := NewTopology(t, NATCone, NATCone)
	names := listNetns(t)
	for _, ns := range tp.namespaces() {
		if !slices.Contains(names, ns) {
			t.Errorf("namespace %s missing from ip netns list: %v", ns, names)
		}
	}
	tp.StartRendezvous(t, tp.Pub)

	// dev and cli reach the relay, which sees their NATs' addresses.
	for _, c := range []struct{ ns, want string }{{tp.Dev, tp.NAT1IP}, {tp.Cli, tp.NAT2IP}} {
		r := tp.Probe(t, c.ns, tp.rv(rendezvousPort), ProbeOpts{Count: 3})
		t.Logf("%s -> relay: %d/%d answered, seen as %s, rtt %s", c.ns, r.Replies, r.Sent, r.Observed, r.MinRTT())
		if r.Replies != 3 {
			t.Fatalf("%s -> %s over UDP: %d of 3 answered", c.ns, tp.rv(rendezvousPort), r.Replies)
		}
		if got := hostOf(t, r.Observed); got != c.want {
			t.Errorf("the relay saw %s as %s, want the NAT's address %s (masqueraded)", c.ns, r.Observed, c.want)
		}
	}

	// Private addresses are private: a server in cli answers its router
	// (the control) but not dev; nothing from the internet gets in.
	tp.StartRendezvous(t, tp.Cli)
	tp.StartRendezvous(t, tp.Dev)
	cliSrv := net.JoinHostPort(tp.CliIP, strconv.Itoa(rendezvousPort))
	if r := tp.Probe(t, tp.NAT2, cliSrv, ProbeOpts{Count: 2}); r.Replies != 2 {
		t.Fatalf("control: nat2 -> %s (its own LAN): %d of 2 answered", cliSrv, r.Replies)
	}
	for _, c := range []struct{ from, to string }{
		{tp.Dev, cliSrv}, // no route to another home's private network
		{tp.Pub, net.JoinHostPort(tp.DevIP, strconv.Itoa(rendezvousPort))},  // nor from the internet
		{tp.Pub, net.JoinHostPort(tp.NAT1IP, strconv.Itoa(rendezvousPort))}, // no port forwarding
		{tp.NAT2, net.JoinHostPort(tp.NAT1IP, strconv.Itoa(rendezvousPort))},
	} {
		r := tp.Probe(t, c.from, c.to, ProbeOpts{Count: 3, Wait: 500 * time.Millisecond})
		t.Logf("%s -> %s: %d/%d sent, %d answered (want none)", c.from, c.to, r.Sent, 3, r.Replies)
		if r.Replies != 0 {
			t.Errorf("%s reached %s (%d answers), want unreachable", c.from, c.to, r.Replies)
		}
	}

	// Even sent straight at their private addresses, through their routers
	// (as a neighbour on the same link could), unsolicited packets do not
	// get into a home: the routers' FORWARD firewall.
	for _, c := range []struct{ net, via, to string }{
		{"10.1.0.0/24", tp.NAT1IP, net.JoinHostPort(tp.DevIP, strconv.Itoa(rendezvousPort))},
		{"10.2.0.0/24", tp.NAT2IP, cliSrv},
	} {
		tp.must(t, tp.Pub, netnsTools.ip, "route", "add", c.net, "via", c.via)
		r := tp.Probe(t, tp.Pub, c.to, ProbeOpts{Count: 3, Wait: 500 * time.Millisecond})
		tp.must(t, tp.Pub, netnsTools.ip, "route", "del", c.net, "via", c.via)
		t.Logf("pub -> %s via %s: %d/3 sent, %d answered (want none)", c.to, c.via, r.Sent, r.Replies)
		if r.Sent != 3 || r.Replies != 0 {
			t.Errorf("pub -> %s routed via %s: %d sent, %d answered; want 3 sent, none answered", c.to, c.via, r.Sent, r.Replies)
		}
	}

	// Counters see traffic through the relay, and only that.
	rx0, tx0 := tp.Counters(t)
	const n, size = 50, 1000
	if r := tp.Probe(t, tp.Dev, tp.rv(rendezvousPort), ProbeOpts{Count: n, Size: size, Interval: time.Millisecond}); r.Replies != n {
		t.Fatalf("dev -> relay: %d of %d answered", r.Replies, n)
	}
	rx1, tx1 := tp.Counters(t)
	t.Logf("relay counters after %d x %d bytes each way: rx +%d, tx +%d", n, size, rx1-rx0, tx1-tx0)
	if rx1-rx0 < n*size || tx1-tx0 < n*size {
		t.Errorf("relay counters rose by rx %d, tx %d; want at least %d each", rx1-rx0, tx1-tx0, n*size)
	}
	if rx1-rx0 > 2*n*size || tx1-tx0 > 2*n*size {
		t.Errorf("relay counters rose by rx %d, tx %d for %d bytes each way: something else talks on the internet", rx1-rx0, tx1-tx0, n*size)
	}
	if r := tp.Probe(t, tp.NAT2, cliSrv, ProbeOpts{Count: n, Size: size, Interval: time.Millisecond}); r.Replies != n {
		t.Fatalf("nat2 -> cli: %d of %d answered", r.Replies, n)
	}
	rx2, tx2 := tp.Counters(t)
	t.Logf("relay counters after traffic inside home 2: rx +%d, tx +%d", rx2-rx1, tx2-tx1)
	// (A stray ARP frame or two may pass meanwhile, nothing like 50 kB.)
	if rx2-rx1 > n*size/10 || tx2-tx1 > n*size/10 {
		t.Errorf("traffic that never crosses the internet moved the relay's counters: rx +%d, tx +%d", rx2-rx1, tx2-tx1)
	}
}

func TestNATHolePunch(t *testing.T) {
	for _, c := range []struct {
		nat1, nat2 NATMode
		cliLate    time.Duration
		want       bool
	}{
		{NATCone, NATCone, 0, true},
		// dev's punches reach nat2 before cli sent anything to dev: the
		// router must drop them without committing them to conntrack, or
		// cli's mapping clashes with them and moves to another port.
		{NATCone, NATCone, 500 * time.Millisecond, true},
		{NATSymmetric, NATSymmetric, 0, false},
		{NATCone, NATSymmetric, 0, false}, // port-restricted cone vs symmetric: no
	} {
		name := string(c.nat1) + "-" + string(c.nat2)
		if c.cliLate > 0 {
			name += "-cli-late"
		}
		t.Run(name, func(t *testing.T) {
			tp := NewTopology(t, c.nat1, c.nat2)
			tp.StartRendezvous(t, tp.Pub)
			dev, cli := tp.Punch(t, "s1", 40000, 2*time.Second, c.cliLate)
			for _, r := range []PunchResult{dev, cli} {
				t.Logf("%s: mapped %v, peer %s, punches sent %d, received %d (first from %q)",
					r.Name, r.Mapped, r.Peer, r.Sent, r.Received, r.From)
			}
			for _, s := range []struct {
				r       PunchResult
				mode    NATMode
				natIP   string
				peer    PunchResult
				peerNAT string
			}{{dev, c.nat1, tp.NAT1IP, cli, tp.NAT2IP}, {cli, c.nat2, tp.NAT2IP, dev, tp.NAT1IP}} {
				if got := hostOf(t, s.r.Mapped[0]); got != s.natIP {
					t.Errorf("%s mapped to %s, want an address of %s", s.r.Name, s.r.Mapped[0], s.natIP)
				}
				if want := s.mode == NATCone; s.r.EndpointIndependent() != want {
					t.Errorf("%s behind a %s NAT: mappings %v, want endpoint-independent=%v", s.r.Name, s.mode, s.r.Mapped, want)
				}
				if s.r.Peer != s.peer.Mapped[0] {
					t.Errorf("%s was told peer %s, but the peer's mapping was %s", s.r.Name, s.r.Peer, s.peer.Mapped[0])
				}
				if s.r.Got != c.want {
					t.Errorf("%s-%s: %s received a punch: %v, want %v", c.nat1, c.nat2, s.r.Name, s.r.Got, c.want)
				}
				if s.r.Got && hostOf(t, s.r.From) != s.peerNAT {
					t.Errorf("%s got its punch from %s, want the peer NAT %s", s.r.Name, s.r.From, s.peerNAT)
				}
			}
		})
	}
}

func TestNATBlockDirect(t *testing.T) {
	tp := NewTopology(t, NATCone, NATCone)
	tp.StartRendezvous(t, tp.Pub)

	tp.BlockDirect(t, true)
	tp.BlockDirect(t, true) // idempotent
	dev, cli := tp.Punch(t, "blocked", 40010, 2*time.Second, 0)
	t.Logf("blocked: dev got %v (%d), cli got %v (%d)", dev.Got, dev.Received, cli.Got, cli.Received)
	if dev.Got || cli.Got {
		t.Errorf("with BlockDirect on, a direct punch got through (dev %v, cli %v)", dev.Got, cli.Got)
	}
	if !dev.EndpointIndependent() || !cli.EndpointIndependent() {
		t.Errorf("with BlockDirect on, the relay no longer sees one mapping per socket: %v %v", dev.Mapped, cli.Mapped)
	}
	for _, ns := range []string{tp.Dev, tp.Cli} {
		if r := tp.Probe(t, ns, tp.rv(rendezvousPort2), ProbeOpts{Count: 5}); r.Replies != 5 {
			t.Errorf("with BlockDirect on, %s -> relay: %d of 5 answered, want all", ns, r.Replies)
		}
	}

	tp.BlockDirect(t, false)
	dev, cli = tp.Punch(t, "unblocked", 40020, 2*time.Second, 0)
	t.Logf("unblocked: dev got %v (%d), cli got %v (%d)", dev.Got, dev.Received, cli.Got, cli.Received)
	if !dev.Got || !cli.Got {
		t.Errorf("with BlockDirect off again, punching failed (dev %v, cli %v)", dev.Got, cli.Got)
	}
}

func TestNATFlushConntrack(t *testing.T) {
	for _, mode := range []NATMode{NATCone, NATSymmetric} {
		t.Run(string(mode), func(t *testing.T) {
			tp := NewTopology(t, mode, NATCone)
			tp.StartRendezvous(t, tp.Pub)
			const lport = 40001
			probe := func() string {
				r := tp.Probe(t, tp.Dev, tp.rv(rendezvousPort), ProbeOpts{LocalPort: lport, Count: 1})
				if r.Replies != 1 {
					t.Fatalf("dev -> relay from port %d: no answer", lport)
				}
				return r.Observed
			}
			ours := func() []string { // nat1's entries for our flow
				var out []string
				for _, l := range tp.Conntrack(t, tp.NAT1) {
					if strings.Contains(l, "src="+tp.DevIP+" ") && strings.Contains(l, "sport="+strconv.Itoa(lport)+" ") {
						out = append(out, l)
					}
				}
				return out
			}
			first := probe()
			again := probe()
			entries := ours()
			t.Logf("mapping %s, then %s; nat1 conntrack: %v", first, again, entries)
			if again != first {
				t.Fatalf("the same flow got a new mapping without a flush: %s then %s", first, again)
			}
			if len(entries) != 1 || !strings.Contains(entries[0], "dport="+strconv.Itoa(portOf(t, first))) {
				t.Fatalf("nat1's conntrack table does not show the mapping %s: %v", first, entries)
			}

			tp.FlushConntrack(t, tp.NAT1)
			if left := tp.Conntrack(t, tp.NAT1); len(left) != 0 {
				t.Errorf("after conntrack -F nat1 still tracks %v", left)
			}
			after := probe()
			t.Logf("after the flush: mapping %s; conntrack %v", after, ours())
			if len(ours()) != 1 {
				t.Errorf("after the flush, the next packet did not create one new entry: %v", ours())
			}
			switch mode {
			case NATSymmetric:
				if after == first {
					t.Errorf("--random-fully NAT kept mapping %s across a conntrack flush, want a new port", first)
				}
			case NATCone:
				// MASQUERADE keeps the inside port when it is free: a new
				// mapping, but it looks the same from outside.
				if after != first {
					t.Errorf("cone NAT mapped %s after the flush, want the port-preserving %s again", after, first)
				}
			}
		})
	}
}

func TestNATLossDelay(t *testing.T) {
	tp := NewTopology(t, NATCone, NATCone)
	tp.StartRendezvous(t, tp.Pub)
	rtt := func(ns string) ProbeResult {
		r := tp.Probe(t, ns, tp.rv(rendezvousPort), ProbeOpts{Count: 20, Interval: 5 * time.Millisecond, Wait: 2 * time.Second})
		if r.Replies != 20 {
			t.Fatalf("%s -> relay: %d of 20 answered", ns, r.Replies)
		}
		return r
	}
	base := rtt(tp.Dev)
	t.Logf("baseline dev rtt: min %s, median %s", base.MinRTT(), base.MedianRTT())

	const d = 40 * time.Millisecond
	tp.AddLossDelay(t, tp.NAT1, 0, d)
	slow := rtt(tp.Dev)
	other := rtt(tp.Cli)
	t.Logf("delay %s at nat1: dev rtt min %s, median %s; cli rtt median %s", d, slow.MinRTT(), slow.MedianRTT(), other.MedianRTT())
	if slow.MinRTT() < 2*d*95/100 || slow.MedianRTT() > 2*d+time.Second {
		t.Errorf("with %s each way at nat1, dev's rtt is %s..%s, want about %s", d, slow.MinRTT(), slow.MedianRTT(), 2*d)
	}
	if other.MedianRTT() >= d {
		t.Errorf("delay at nat1 slowed cli (behind nat2) down: median rtt %s", other.MedianRTT())
	}

	const p = 0.3
	tp.AddLossDelay(t, tp.NAT2, p, 0)
	const n = 400
	r := tp.Probe(t, tp.Cli, tp.rv(rendezvousPort), ProbeOpts{Count: n, Interval: 2 * time.Millisecond, Wait: time.Second})
	got := float64(r.Replies) / float64(n)
	want := (1 - p) * (1 - p) // request and answer both pass nat2
	t.Logf("loss %g at nat2: %d of %d round trips (%.2f, expect %.2f)", p, r.Replies, n, got, want)
	if got < want-0.14 || got > want+0.14 {
		t.Errorf("with loss %g at nat2, %.2f of round trips succeeded, want %.2f±0.14", p, got, want)
	}
	if r := tp.Probe(t, tp.Dev, tp.rv(rendezvousPort), ProbeOpts{Count: 100, Interval: 2 * time.Millisecond, Wait: 2 * time.Second}); r.Replies != 100 {
		t.Errorf("loss at nat2 affected dev (behind nat1): %d of 100 answered", r.Replies)
	}

	// In an end host it is what the host sends and receives.
	const dp = 15 * time.Millisecond
	tp.AddLossDelay(t, tp.Pub, 0, dp)
	both := rtt(tp.Dev)
	t.Logf("plus %s at pub: dev rtt min %s", dp, both.MinRTT())
	if both.MinRTT() < (2*d+2*dp)*95/100 {
		t.Errorf("with %s at nat1 and %s at pub, dev's rtt is %s, want at least %s", d, dp, both.MinRTT(), 2*d+2*dp)
	}
}

// TestNetnsTeardown: after the test that made it, nothing of a topology is
// left: namespaces, links on the host, processes started in it.
func TestNetnsTeardown(t *testing.T) {
	needNetns(t)
	hostLinks := func() string {
		r := runCmd(10*time.Second, nil, nil, netnsTools.ip, "-o", "link", "show")
		if r.Code != 0 {
			t.Fatalf("ip link show: %s", r)
		}
		var names []string
		for _, l := range strings.Split(string(r.Stdout), "\n") {
			if f := strings.Fields(l); len(f) > 1 {
				names = append(names, strings.TrimSuffix(f[1], ":"))
			}
		}
		return strings.Join(names, " ")
	}
	linksBefore := hostLinks()
	var tp *Topology
	var stray *exec.Cmd
	strayDone := make(chan struct{})
	var rv *proc
	t.Run("build", func(t *testing.T) {
		tp = NewTopology(t, NATSymmetric, NATCone)
		rv = tp.StartRendezvous(t, tp.Pub)
		tp.BlockDirect(t, true)
		tp.AddLossDelay(t, tp.NAT1, 0.01, 5*time.Millisecond)
		// A process the test started by hand and never stopped.
		stray = tp.Exec(context.Background(), tp.Dev, "sleep", "600")
		if err := stray.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { _ = stray.Wait(); close(strayDone) }()
		if r := tp.Probe(t, tp.Dev, tp.rv(rendezvousPort), ProbeOpts{Count: 3}); r.Replies == 0 {
			t.Fatalf("topology does not work: %+v", r)
		}
	})
	if tp == nil {
		t.Fatal("no topology was built")
	}
	left := []string{}
	names := listNetns(t)
	for _, ns := range tp.namespaces() {
		if slices.Contains(names, ns) {
			left = append(left, ns)
		}
		if _, err := os.Stat("/run/netns/" + ns); err == nil {
			left = append(left, "/run/netns/"+ns)
		}
	}
	if len(left) > 0 {
		t.Errorf("left after the test: %v", left)
	}
	for _, n := range names {
		if strings.HasPrefix(n, netnsPrefix+tp.id) {
			t.Errorf("namespace %s of this topology left", n)
		}
	}
	select {
	case <-strayDone:
	case <-time.After(5 * time.Second):
		t.Errorf("process %d started in %s still runs after teardown", stray.Process.Pid, tp.Dev)
		_ = stray.Process.Kill()
	}
	if !rv.exited() {
		t.Errorf("rendezvous (pid %d) still runs after teardown", rv.pid())
	}
	if after := hostLinks(); after != linksBefore {
		t.Errorf("host links changed: before %q, after %q", linksBefore, after)
	}
	t.Logf("gone: %s-*; host links: %s", netnsPrefix+tp.id, linksBefore)
}

// TestNetnsSweep: leftovers of a dead run are removed, namespaces of live
// runs and newer ones are not.
func TestNetnsSweep(t *testing.T) {
	needNetns(t)
	// A PID that is gone: a process that already exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	deadPID := dead.Process.Pid
	if syscall.Kill(deadPID, 0) == nil {
		t.Skipf("PID %d was reused already", deadPID)
	}
	suffix, err := newNetnsID()
	if err != nil {
		t.Fatal(err)
	}
	rnd := suffix[strings.LastIndexByte(suffix, '-')+1:]
	stale := netnsPrefix + strconv.Itoa(deadPID) + "-" + rnd + "-pub"
	live := netnsPrefix + strconv.Itoa(os.Getpid()) + "-" + rnd + "-pub"
	other := "tnlx-" + rnd // not ours: never touched
	for _, ns := range []string{stale, live, other} {
		if r := runCmd(10*time.Second, nil, nil, netnsTools.ip, "netns", "add", ns); r.Code != 0 {
			t.Fatalf("ip netns add %s: %s", ns, r)
		}
		t.Cleanup(func() { _ = deleteNetns(netnsTools.ip, ns) })
	}
	// A cutoff before they were made: all are too new to sweep.
	if removed, err := sweepNetns(time.Now().Add(-time.Minute)); err != nil || slices.Contains(removed, stale) {
		t.Fatalf("sweep with an old cutoff removed %v (%v), want none of ours", removed, err)
	}
	removed, err := sweepNetns(time.Now().Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("swept %v", removed)
	names := listNetns(t)
	if slices.Contains(names, stale) {
		t.Errorf("%s (creator PID %d gone) survived the sweep", stale, deadPID)
	}
	if !slices.Contains(names, live) {
		t.Errorf("%s (creator alive: this process) was swept", live)
	}
	if !slices.Contains(names, other) {
		t.Errorf("%s (not this harness's name) was swept", other)
	}
}

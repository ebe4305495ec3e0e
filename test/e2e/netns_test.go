//go:build linux

package e2e

// NAT on one machine: network namespaces wired into a small "internet" with
// two home-router NATs, for tests of what the product does behind NAT (hole
// punching, relay fallback, rebinding, keep-alives, loss and delay).
//
//	namespace  address                     role
//	inet       bridge "internet"           the internet: a switch, 203.0.113.0/24
//	pub        203.0.113.1 (wan)           the relay / rendezvous node
//	nat1       203.0.113.11 (wan)          home router of dev, 10.1.0.1 (lan)
//	nat2       203.0.113.12 (wan)          home router of cli, 10.2.0.1 (lan)
//	dev        10.1.0.2 (eth0)             the device, default route via nat1
//	cli        10.2.0.2 (eth0)             the client, default route via nat2
//
// The NATs masquerade on wan (cone: MASQUERADE, which keeps the source port
// and maps endpoint-independently; symmetric: MASQUERADE --random-fully, a new
// random port per destination) and, like home routers, drop unsolicited
// inbound traffic: in INPUT (NEW or INVALID from wan) and in FORWARD (from wan
// only ESTABLISHED,RELATED). The INPUT rule is what hole punching needs: a
// punch that arrives before the local side has punched is addressed to the
// NAT itself; accepted, it would be committed to conntrack, clash with the
// outbound mapping made a moment later and make the NAT pick another port,
// so punching would fail even between cone NATs (TestNATHolePunch
// cone-cone-cli-late). The FORWARD rule keeps out packets routed straight at
// the private addresses.
//
// Only TEST-NET-3 (203.0.113.0/24) and 10.1.0.0/24, 10.2.0.0/24 are used, and
// only inside namespaces made here: nothing can leave the machine (no
// namespace has a route off it). IPv6 is off in every namespace, so the
// counters see only the tests' traffic.
//
// Namespaces are named tnl-PID-XXXX-ROLE (PID of the test process, XXXX
// random). Deleting a namespace removes its links, routes and iptables rules;
// every topology is deleted at the end of its test, and leftovers of dead
// runs (older than this process, whose PID is gone) are swept once per run.
//
// The test binary doubles as the UDP programs run in the namespaces (a UDP
// echo/rendezvous server, a prober and a hole puncher): it is re-executed
// with helperArg as its first argument, see runHelper.

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NATMode is how a NAT maps inside endpoints to public ports.
type NATMode string

const (
	// NATCone is MASQUERADE: endpoint-independent mapping (the public port
	// is the inside port when free), address-and-port-dependent filtering.
	NATCone NATMode = "cone"
	// NATSymmetric is MASQUERADE --random-fully: a new random public port for
	// every destination, so the port a rendezvous node sees is useless to a
	// peer.
	NATSymmetric NATMode = "symmetric"
)

const (
	netnsPrefix = "tnl-"
	// Interface names inside the namespaces.
	wanIf    = "wan"      // pub's and the NATs' internet side
	lanIf    = "lan"      // the NATs' home side
	hostIf   = "eth0"     // dev's and cli's only interface
	bridgeIf = "internet" // the bridge in the inet namespace
	// natUDPTimeout is the NATs' UDP mapping lifetime (both
	// nf_conntrack_udp_timeout and _stream), shorter than the kernel's 120 s
	// for assured flows so that keep-alive tests do not take minutes.
	natUDPTimeout = 30 * time.Second
)

// Topology is one instance of the namespaces above. The exported fields are
// read-only.
type Topology struct {
	Inet, Pub, NAT1, NAT2, Dev, Cli string // namespace names

	PubIP          string // 203.0.113.1, the relay's address on the internet
	NAT1IP, NAT2IP string // 203.0.113.11 / .12, the NATs' public addresses
	DevIP, CliIP   string // 10.1.0.2 / 10.2.0.2, behind nat1 / nat2

	NAT1Mode, NAT2Mode NATMode

	// Set by AddRoamNAT: the third home router cli can move to.
	NAT3, NAT3IP, CliIP3 string

	id string // PID-XXXX, the common part of the names

	mu      sync.Mutex
	blocked bool           // BlockDirect is on
	queues  map[string]int // next NFQUEUE number per namespace
}

// netnsTools are the absolute paths of the tools, found by needNetns.
var netnsTools struct {
	once sync.Once
	skip string // why the tests cannot run here
	fail string // the same, when CI is set and it must not be skipped

	ip, iptables, iptablesRestore, conntrack string
	iptablesVersion                          string // `iptables -V`: nf_tables or legacy
}

// netnsProcessStart is (close to) when this test process started: sweeping
// never touches namespaces created after it.
var netnsProcessStart = time.Now()

// needNetns skips the test unless this machine can build topologies: root,
// ip (iproute2), iptables and conntrack, and a working `ip netns add` with
// iptables inside the namespace. With CI set, missing tools as root fail the
// test instead. The first call also sweeps leftovers of dead runs.
func needNetns(t *testing.T) {
	t.Helper()
	netnsTools.once.Do(probeNetns)
	if netnsTools.fail != "" {
		t.Fatal(netnsTools.fail)
	}
	if netnsTools.skip != "" {
		t.Skip(netnsTools.skip)
	}
}

func probeNetns() {
	nt := &netnsTools
	if os.Geteuid() != 0 {
		nt.skip = "network namespace tests need root (ip netns, veth, iptables)"
		return
	}
	var missing []string
	for _, tool := range []struct {
		name, pkg string
		dst       *string
	}{
		{"ip", "iproute2", &nt.ip},
		{"iptables", "iptables", &nt.iptables},
		{"iptables-restore", "iptables", &nt.iptablesRestore},
		{"conntrack", "conntrack", &nt.conntrack},
	} {
		p, err := lookPath(tool.name)
		if err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", tool.name, tool.pkg))
			continue
		}
		*tool.dst = p
	}
	if len(missing) > 0 {
		msg := "network namespace tests: missing " + strings.Join(missing, ", ") +
			" (as root: apt-get install iproute2 iptables conntrack)"
		if os.Getenv("CI") != "" {
			nt.fail = msg
		} else {
			nt.skip = msg
		}
		return
	}
	if r := runCmd(10*time.Second, nil, nil, nt.iptables, "-V"); r.Code == 0 {
		nt.iptablesVersion = strings.TrimSpace(string(r.Stdout))
	}

	if removed, err := sweepNetns(netnsProcessStart); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: sweeping leftover namespaces: %v\n", err)
	} else if len(removed) > 0 {
		fmt.Fprintf(os.Stderr, "e2e: removed leftover namespaces of dead runs: %s\n", strings.Join(removed, " "))
	}

	// Can we make a namespace, and does iptables (with the NAT and conntrack
	// matches the topology uses) work in it?
	name, err := newNetnsID()
	if err != nil {
		nt.skip = err.Error()
		return
	}
	name = netnsPrefix + name + "-probe"
	if r := runCmd(20*time.Second, nil, nil, nt.ip, "netns", "add", name); r.Code != 0 {
		nt.skip = fmt.Sprintf("cannot create a network namespace (ip netns add %s): %s", name, r)
		return
	}
	defer deleteNetns(nt.ip, name)
	for _, args := range [][]string{
		{nt.iptables, "-w", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "MASQUERADE", "--random-fully"},
		{nt.iptables, "-w", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"},
		{nt.iptables, "-w", "-A", "FORWARD", "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP"},
		{nt.conntrack, "-L"},
	} {
		r := runCmd(20*time.Second, nil, nil, nt.ip, append([]string{"netns", "exec", name}, args...)...)
		if r.Code != 0 {
			nt.skip = fmt.Sprintf("%s does not work in a network namespace (%s): %s",
				filepath.Base(args[0]), nt.iptablesVersion, r)
			return
		}
	}
}

// newNetnsID returns PID-XXXX for a new topology's names.
func newNetnsID() (string, error) {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d-%s", os.Getpid(), hex.EncodeToString(b[:])), nil
}

var netnsNameRE = regexp.MustCompile(`^tnl-([0-9]+)-[0-9a-f]{4}-[a-z0-9]+$`)

// sweepNetns deletes this harness's namespaces that were created before
// cutoff by a process that is gone (or whose PID now belongs to a younger
// process), killing what still runs inside them. It returns their names.
func sweepNetns(cutoff time.Time) ([]string, error) {
	ents, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, e := range ents {
		m := netnsNameRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		created := info.ModTime()
		if !created.Before(cutoff) {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		if started, ok := procStartTime(pid); ok && !started.After(created.Add(time.Second)) {
			continue // its creator still runs
		}
		if err := deleteNetns(netnsTools.ip, e.Name()); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, e.Name())
	}
	return removed, errors.Join(errs...)
}

// procStartTime is when process pid started, if it exists.
func procStartTime(pid int) (time.Time, bool) {
	if pid <= 0 {
		return time.Time{}, false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return time.Time{}, false
	}
	fields := strings.Fields(s[i+1:]) // fields[0] is field 3 (state)
	if len(fields) < 20 {
		return time.Time{}, false
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64) // field 22: starttime
	if err != nil {
		return time.Time{}, false
	}
	st, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			boot, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				break
			}
			const userHZ = 100 // USER_HZ, 100 on every Linux architecture Go supports
			return time.Unix(boot, 0).Add(time.Duration(ticks) * time.Second / userHZ), true
		}
	}
	return time.Time{}, false
}

// deleteNetns kills (by PID) whatever runs in the namespace, then deletes it.
func deleteNetns(ip, name string) error {
	if r := runCmd(10*time.Second, nil, nil, ip, "netns", "pids", name); r.Code == 0 {
		for _, f := range strings.Fields(string(r.Stdout)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	r := runCmd(20*time.Second, nil, nil, ip, "netns", "del", name)
	if r.Code != 0 {
		if _, err := os.Stat(filepath.Join("/run/netns", name)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("ip netns del %s: %s", name, r)
	}
	return nil
}

// listNetns returns the names `ip netns list` shows.
func listNetns(t *testing.T) []string {
	t.Helper()
	r := runCmd(10*time.Second, nil, nil, netnsTools.ip, "netns", "list")
	if r.Code != 0 {
		t.Fatalf("ip netns list: %s", r)
	}
	var names []string
	for _, line := range strings.Split(string(r.Stdout), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0]) // "NAME (id: N)"
		}
	}
	return names
}

// NewTopology builds the namespaces for the test and deletes them when it
// ends. nat1 is dev's router, nat2 is cli's.
func NewTopology(t *testing.T, nat1, nat2 NATMode) *Topology {
	t.Helper()
	needNetns(t)
	for _, m := range []NATMode{nat1, nat2} {
		if m != NATCone && m != NATSymmetric {
			t.Fatalf("NewTopology: NAT mode %q, want %q or %q", m, NATCone, NATSymmetric)
		}
	}
	start := time.Now()
	var id string
	for {
		var err error
		if id, err = newNetnsID(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join("/run/netns", netnsPrefix+id+"-pub")); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	name := func(role string) string { return netnsPrefix + id + "-" + role }
	tp := &Topology{
		Inet: name("inet"), Pub: name("pub"), NAT1: name("nat1"), NAT2: name("nat2"), Dev: name("dev"), Cli: name("cli"),
		PubIP: "203.0.113.1", NAT1IP: "203.0.113.11", NAT2IP: "203.0.113.12", DevIP: "10.1.0.2", CliIP: "10.2.0.2",
		NAT1Mode: nat1, NAT2Mode: nat2,
		id:     id,
		queues: map[string]int{},
	}

	var made []string
	t.Cleanup(func() {
		var errs []error
		for i := len(made) - 1; i >= 0; i-- {
			if err := deleteNetns(netnsTools.ip, made[i]); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) > 0 {
			t.Errorf("deleting the topology's namespaces: %v", errors.Join(errs...))
		}
	})
	for _, ns := range tp.namespaces() {
		tp.mustHost(t, netnsTools.ip, "netns", "add", ns)
		made = append(made, ns)
		tp.setupNetns(t, ns)
	}

	// The internet: a bridge with pub, nat1 and nat2 on it.
	tp.mustHost(t, netnsTools.ip, "-n", tp.Inet, "link", "add", bridgeIf, "type", "bridge")
	tp.mustHost(t, netnsTools.ip, "-n", tp.Inet, "link", "set", bridgeIf, "up")
	for _, w := range []struct{ port, ns, ip string }{
		{"pub", tp.Pub, tp.PubIP}, {"nat1", tp.NAT1, tp.NAT1IP}, {"nat2", tp.NAT2, tp.NAT2IP},
	} {
		tp.plugInternet(t, w.port, w.ns, w.ip)
	}

	// The homes.
	tp.homeRouter(t, tp.NAT1, tp.Dev, hostIf, "10.1.0", nat1, true)
	tp.homeRouter(t, tp.NAT2, tp.Cli, hostIf, "10.2.0", nat2, true)
	t.Logf("topology %s-* (nat1 %s, nat2 %s) up in %s; %s", netnsPrefix+id, nat1, nat2,
		time.Since(start).Round(time.Millisecond), netnsTools.iptablesVersion)
	return tp
}

func (tp *Topology) namespaces() []string {
	return []string{tp.Inet, tp.Pub, tp.NAT1, tp.NAT2, tp.Dev, tp.Cli}
}

// setupNetns readies a namespace just added: IPv6 off, loopback up.
func (tp *Topology) setupNetns(t *testing.T, ns string) {
	t.Helper()
	// (Without IPv6 in the kernel there is nothing to turn off.)
	tp.sysctl(t, ns, map[string]string{
		"net/ipv6/conf/all/disable_ipv6?":     "1",
		"net/ipv6/conf/default/disable_ipv6?": "1",
	})
	tp.mustHost(t, netnsTools.ip, "-n", ns, "link", "set", "lo", "up")
}

// plugInternet connects ns to the internet bridge on its wan interface at
// ip; port is the link's name on the bridge.
func (tp *Topology) plugInternet(t *testing.T, port, ns, ip string) {
	t.Helper()
	// Created directly in their namespaces: no name ever exists on the host.
	tp.mustHost(t, netnsTools.ip, "link", "add", port, "netns", tp.Inet, "type", "veth", "peer", "name", wanIf, "netns", ns)
	tp.mustHost(t, netnsTools.ip, "-n", tp.Inet, "link", "set", port, "master", bridgeIf, "up")
	tp.mustHost(t, netnsTools.ip, "-n", ns, "addr", "add", ip+"/24", "dev", wanIf)
	tp.mustHost(t, netnsTools.ip, "-n", ns, "link", "set", wanIf, "up")
}

// homeRouter makes nat (already on the internet) the home router of host,
// on a link hostLink in host and lan in nat: prefix.1 is the router,
// prefix.2 the host. With attach the host gets its address and default
// route at once; without, the link is there, down and unaddressed, for
// MoveClient to switch to later.
func (tp *Topology) homeRouter(t *testing.T, nat, host, hostLink, prefix string, mode NATMode, attach bool) {
	t.Helper()
	tp.mustHost(t, netnsTools.ip, "link", "add", lanIf, "netns", nat, "type", "veth", "peer", "name", hostLink, "netns", host)
	tp.mustHost(t, netnsTools.ip, "-n", nat, "addr", "add", prefix+".1/24", "dev", lanIf)
	tp.mustHost(t, netnsTools.ip, "-n", nat, "link", "set", lanIf, "up")
	if attach {
		tp.mustHost(t, netnsTools.ip, "-n", host, "addr", "add", prefix+".2/24", "dev", hostLink)
		tp.mustHost(t, netnsTools.ip, "-n", host, "link", "set", hostLink, "up")
		tp.mustHost(t, netnsTools.ip, "-n", host, "route", "add", "default", "via", prefix+".1")
	}

	tp.sysctl(t, nat, map[string]string{"net/ipv4/ip_forward": "1"})
	masq := "-A POSTROUTING -o " + wanIf + " -j MASQUERADE"
	if mode == NATSymmetric {
		masq += " --random-fully"
	}
	rules := strings.Join([]string{
		"*nat",
		masq,
		"COMMIT",
		"*filter",
		// A home router: nothing unsolicited from the internet gets in,
		// neither to the router nor to the home.
		"-A INPUT -i " + wanIf + " -m conntrack --ctstate NEW,INVALID -j DROP",
		"-A FORWARD -i " + wanIf + " -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
		"-A FORWARD -i " + wanIf + " -j DROP",
		"COMMIT",
	}, "\n") + "\n"
	r := runCmd(20*time.Second, nil, strings.NewReader(rules), netnsTools.ip, "netns", "exec", nat, netnsTools.iptablesRestore, "-w")
	if r.Code != 0 {
		t.Fatalf("iptables-restore in %s (%s):\n%s\n%s", nat, netnsTools.iptablesVersion, rules, r)
	}
	// After the rules: they load conntrack, which owns these sysctls.
	tp.SetUDPTimeout(t, nat, natUDPTimeout)
}

// Roaming: a third home router the client can move to mid-test, as a
// laptop leaves one Wi-Fi for another (or a VPN takes the default route).
//
//	namespace  address                     role
//	nat3       203.0.113.13 (wan)          the other network's router, 10.3.0.1 (lan)
//	cli        10.3.0.2 (eth1)             once moved; eth1 is down until then
const (
	roamIf     = "eth1"
	roamPrefix = "10.3.0"
)

// AddRoamNAT adds nat3, in the given mode, and cli's link to it (down).
// It is deleted when t ends. Call it before starting processes, so that
// they stop before it goes.
func (tp *Topology) AddRoamNAT(t *testing.T, mode NATMode) {
	t.Helper()
	if mode != NATCone && mode != NATSymmetric {
		t.Fatalf("AddRoamNAT: NAT mode %q, want %q or %q", mode, NATCone, NATSymmetric)
	}
	if tp.NAT3 != "" {
		t.Fatal("AddRoamNAT called twice")
	}
	tp.NAT3, tp.NAT3IP, tp.CliIP3 = netnsPrefix+tp.id+"-nat3", "203.0.113.13", roamPrefix+".2"
	tp.mustHost(t, netnsTools.ip, "netns", "add", tp.NAT3)
	t.Cleanup(func() {
		if err := deleteNetns(netnsTools.ip, tp.NAT3); err != nil {
			t.Errorf("deleting %s: %v", tp.NAT3, err)
		}
	})
	tp.setupNetns(t, tp.NAT3)
	tp.plugInternet(t, "nat3", tp.NAT3, tp.NAT3IP)
	tp.homeRouter(t, tp.NAT3, tp.Cli, roamIf, roamPrefix, mode, false)
}

// MoveClient moves cli from nat2's network to nat3's (AddRoamNAT first):
// its address on eth0 goes, eth1 comes up with 10.3.0.2 and the default
// route via nat3 — what leaving one Wi-Fi for another does to a laptop.
// Processes in cli keep running and keep their sockets.
func (tp *Topology) MoveClient(t *testing.T) {
	t.Helper()
	if tp.NAT3 == "" {
		t.Fatal("MoveClient without AddRoamNAT")
	}
	tp.mustHost(t, netnsTools.ip, "-n", tp.Cli, "addr", "flush", "dev", hostIf)
	tp.mustHost(t, netnsTools.ip, "-n", tp.Cli, "link", "set", hostIf, "down")
	tp.mustHost(t, netnsTools.ip, "-n", tp.Cli, "addr", "add", tp.CliIP3+"/24", "dev", roamIf)
	tp.mustHost(t, netnsTools.ip, "-n", tp.Cli, "link", "set", roamIf, "up")
	tp.mustHost(t, netnsTools.ip, "-n", tp.Cli, "route", "replace", "default", "via", roamPrefix+".1")
}

// mustHost runs a setup command on the host and fails the test if it fails.
func (tp *Topology) mustHost(t *testing.T, name string, args ...string) result {
	t.Helper()
	r := runCmd(20*time.Second, nil, nil, name, args...)
	if r.Code != 0 {
		t.Fatalf("%s %s: %s", filepath.Base(name), strings.Join(args, " "), r)
	}
	return r
}

// must runs a command in namespace ns and fails the test if it fails.
func (tp *Topology) must(t *testing.T, ns, name string, args ...string) result {
	t.Helper()
	r := tp.Run(20*time.Second, ns, name, args...)
	if r.Code != 0 {
		t.Fatalf("in %s: %s %s: %s", ns, filepath.Base(name), strings.Join(args, " "), r)
	}
	return r
}

// sysctl writes /proc/sys/KEY = VALUE inside ns (no procps needed). A key
// ending in "?" is skipped if the kernel does not have it.
func (tp *Topology) sysctl(t *testing.T, ns string, kv map[string]string) {
	t.Helper()
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	const script = `while [ $# -gt 0 ]; do
	case $1 in *\?) f=/proc/sys/${1%?}; [ -e "$f" ] || { shift 2; continue; } ;; *) f=/proc/sys/$1 ;; esac
	echo "$2" > "$f" || exit 1
	shift 2
done`
	args := []string{"-c", script, "sh"}
	for _, k := range keys {
		args = append(args, k, kv[k])
	}
	tp.must(t, ns, "sh", args...)
}

// SetUDPTimeout sets the UDP mapping lifetime (nf_conntrack_udp_timeout and
// nf_conntrack_udp_timeout_stream) of the NAT ns; whole seconds, at least 1.
func (tp *Topology) SetUDPTimeout(t *testing.T, ns string, d time.Duration) {
	t.Helper()
	s := strconv.Itoa(max(1, int(d.Round(time.Second)/time.Second)))
	tp.sysctl(t, ns, map[string]string{
		"net/netfilter/nf_conntrack_udp_timeout":        s,
		"net/netfilter/nf_conntrack_udp_timeout_stream": s,
	})
}

// Exec returns `ip netns exec NS name args…` as a command, for callers that
// want to wire it themselves. It never outlives the test binary.
func (tp *Topology) Exec(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, netnsTools.ip, append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// Run runs a one-shot command in namespace ns with runCmd's hard deadline.
func (tp *Topology) Run(timeout time.Duration, ns string, name string, args ...string) result {
	return runCmd(timeout, nil, nil, netnsTools.ip, append([]string{"netns", "exec", ns, name}, args...)...)
}

// Start starts a long-running process in namespace ns with startCmd: its
// output goes to a log, and at cleanup it must exit 0 on SIGTERM (`ip netns
// exec` execs the command, so the signal reaches it). Processes started
// after NewTopology stop before the namespaces go.
func (tp *Topology) Start(t *testing.T, ns string, label string, name string, args ...string) *proc {
	t.Helper()
	return tp.StartEnv(t, ns, label, nil, name, args...)
}

// StartEnv is Start with extra environment variables.
func (tp *Topology) StartEnv(t *testing.T, ns string, label string, env []string, name string, args ...string) *proc {
	t.Helper()
	return startCmd(t, label, env, netnsTools.ip, append([]string{"netns", "exec", ns, name}, args...)...)
}

// natNeighbour returns the other NAT's public address for a NAT namespace.
func (tp *Topology) natNeighbour(t *testing.T, ns string) string {
	t.Helper()
	switch ns {
	case tp.NAT1:
		return tp.NAT2IP
	case tp.NAT2:
		return tp.NAT1IP
	}
	t.Fatalf("%s is not one of this topology's NATs (%s, %s)", ns, tp.NAT1, tp.NAT2)
	return ""
}

// BlockDirect drops (on) or lets through again (off) all UDP between the
// two NATs' public addresses, in both NATs' FORWARD chains, so that only
// traffic through the relay (203.0.113.1) passes: a direct path that does
// not exist or has broken.
func (tp *Topology) BlockDirect(t *testing.T, on bool) {
	t.Helper()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.blocked == on {
		return
	}
	for _, nat := range []string{tp.NAT1, tp.NAT2} {
		other := tp.natNeighbour(t, nat)
		// Outbound packets still have their private source in FORWARD
		// (SNAT is in POSTROUTING), inbound ones already their private
		// destination: match the other NAT's address on either side.
		for _, dir := range []string{"-d", "-s"} {
			rule := []string{"FORWARD", "-p", "udp", dir, other, "-j", "DROP"}
			if on {
				tp.must(t, nat, netnsTools.iptables, append([]string{"-w", "-I", rule[0], "1"}, rule[1:]...)...)
			} else {
				tp.must(t, nat, netnsTools.iptables, append([]string{"-w", "-D"}, rule...)...)
			}
		}
	}
	tp.blocked = on
}

// FlushConntrack empties the conntrack table of ns (`conntrack -F`): every
// NAT mapping is forgotten and the next packet of each flow gets a new one
// (with --random-fully a new port; cone NATs keep the inside port if free).
func (tp *Topology) FlushConntrack(t *testing.T, ns string) {
	t.Helper()
	tp.must(t, ns, netnsTools.conntrack, "-F")
}

// Conntrack returns the UDP entries of ns's conntrack table, one line each
// as `conntrack -L` prints them.
func (tp *Topology) Conntrack(t *testing.T, ns string) []string {
	t.Helper()
	r := tp.must(t, ns, netnsTools.conntrack, "-L", "-p", "udp")
	var out []string
	for _, line := range strings.Split(string(r.Stdout), "\n") {
		if strings.TrimSpace(line) != "" {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// Counters returns the bytes received and sent so far on pub's internet
// interface: everything the relay got and sent, Ethernet headers and ARP
// included (IPv6 is off, so nothing else talks on it).
func (tp *Topology) Counters(t *testing.T) (relayRxBytes, relayTxBytes uint64) {
	t.Helper()
	r := tp.mustHost(t, netnsTools.ip, "-n", tp.Pub, "-s", "-j", "link", "show", "dev", wanIf)
	type dir struct {
		Bytes uint64 `json:"bytes"`
	}
	type stats struct {
		RX dir `json:"rx"`
		TX dir `json:"tx"`
	}
	var links []struct {
		Stats64 *stats `json:"stats64"`
		Stats   *stats `json:"stats"`
	}
	if err := json.Unmarshal(r.Stdout, &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -s -j link show in %s: %v: %s", tp.Pub, err, r.Stdout)
	}
	s := links[0].Stats64
	if s == nil {
		s = links[0].Stats
	}
	if s == nil {
		t.Fatalf("ip -s -j link show in %s: no statistics: %s", tp.Pub, r.Stdout)
	}
	return s.RX.Bytes, s.TX.Bytes
}

// AddLossDelay makes ns drop a loss fraction (0..1) of the packets passing
// through it and hold the others for delay, until t ends. In a NAT
// that is forwarded traffic, both ways (a round trip through it is delayed
// twice); in pub, dev or cli it is what the namespace sends and receives
// (not loopback), so again twice per round trip. Calls add up.
//
// Loss is `iptables -m statistic --mode random -j DROP`. Delay is nfdelay
// (test/e2e/internal/nfdelay, built here) behind an NFQUEUE rule, since the
// kernel may have no netem.
func (tp *Topology) AddLossDelay(t *testing.T, ns string, loss float64, delay time.Duration) {
	t.Helper()
	if loss < 0 || loss > 1 || delay < 0 {
		t.Fatalf("AddLossDelay(%s, %g, %s): want 0 <= loss <= 1 and delay >= 0", ns, loss, delay)
	}
	chains := tp.lossChains(ns)
	if loss > 0 {
		for _, c := range chains {
			// First in the chain, before the NAT's ESTABLISHED accept.
			tp.must(t, ns, netnsTools.iptables, append([]string{"-w", "-I", c.name, "1"}, c.lossRule(loss)...)...)
		}
	}
	if delay > 0 {
		bin := tp.nfdelay(t)
		tp.mu.Lock()
		q := tp.queues[ns]
		tp.queues[ns]++
		tp.mu.Unlock()
		label := fmt.Sprintf("nfdelay-%s-q%d", strings.TrimPrefix(ns, netnsPrefix+tp.id+"-"), q)
		p := tp.Start(t, ns, label, bin, "-queue", strconv.Itoa(q), "-delay", delay.String())
		if !p.waitLog("nfdelay: ready", 1, 15*time.Second) {
			p.dump(t)
			t.Fatalf("%s did not bind NFQUEUE %d in %s (%s)", label, q, ns, p.exitDesc())
		}
		// Registered after Start, so it runs first: the rule goes before
		// nfdelay stops, and no packet is queued with nobody to release it.
		for _, c := range chains {
			rule := append(append([]string{c.name}, c.match...), "-j", "NFQUEUE", "--queue-num", strconv.Itoa(q))
			tp.must(t, ns, netnsTools.iptables, append([]string{"-w", "-t", "mangle", "-A"}, rule...)...)
			t.Cleanup(func() {
				if r := tp.Run(20*time.Second, ns, netnsTools.iptables, append([]string{"-w", "-t", "mangle", "-D"}, rule...)...); r.Code != 0 {
					t.Errorf("removing the NFQUEUE rule in %s: %s", ns, r)
				}
			})
		}
	}
	t.Logf("%s: loss %g, delay %s per pass", ns, loss, delay)
}

// RemoveLoss takes away one loss rule AddLossDelay(t, ns, loss, …) added
// (the same fraction); the delay, if any, stays until t ends.
func (tp *Topology) RemoveLoss(t *testing.T, ns string, loss float64) {
	t.Helper()
	for _, c := range tp.lossChains(ns) {
		tp.must(t, ns, netnsTools.iptables, append([]string{"-w", "-D", c.name}, c.lossRule(loss)...)...)
	}
	t.Logf("%s: loss %g removed", ns, loss)
}

// lossChain is where AddLossDelay puts its rules in one namespace: a chain
// plus the match that keeps them off loopback.
type lossChain struct {
	name  string
	match []string
}

// lossChains: the forwarded traffic of a NAT; what any other namespace
// sends and receives, not on loopback.
func (tp *Topology) lossChains(ns string) []lossChain {
	if ns == tp.NAT1 || ns == tp.NAT2 {
		return []lossChain{{"FORWARD", nil}}
	}
	return []lossChain{{"INPUT", []string{"!", "-i", "lo"}}, {"OUTPUT", []string{"!", "-o", "lo"}}}
}

// lossRule is the rule (without the chain) dropping a loss fraction.
func (c lossChain) lossRule(loss float64) []string {
	return append(append([]string{}, c.match...),
		"-m", "statistic", "--mode", "random", "--probability", strconv.FormatFloat(loss, 'f', -1, 64), "-j", "DROP")
}

// nfdelay builds the delay tool into t's temporary directory (0.2 s with a
// warm build cache; a binary shared across tests would outlive them).
func (tp *Topology) nfdelay(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "nfdelay")
	r := runCmd(3*time.Minute, nil, nil, "go", "build", "-C", root, "-o", bin, "./test/e2e/internal/nfdelay")
	if r.Code != 0 {
		t.Fatalf("building nfdelay: %s", r)
	}
	return bin
}

// ---- UDP programs for the namespaces: the test binary, re-executed ----

// helperArg as the first argument makes the test binary run a helper
// program instead of tests: rendezvous, probe or punch (see below).
const helperArg = "-e2e.helper"

func init() {
	if len(os.Args) > 2 && os.Args[1] == helperArg {
		os.Exit(runHelper(os.Args[2], os.Args[3:]))
	}
}

// helperBin is the test binary itself.
func helperBin(t *testing.T) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func runHelper(mode string, args []string) int {
	var err error
	switch mode {
	case "rendezvous":
		err = helperRendezvous(args)
	case "probe":
		err = helperProbe(args)
	case "punch":
		err = helperPunch(args)
	default:
		err = fmt.Errorf("unknown helper %q", mode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e helper %s: %v\n", mode, err)
		return 1
	}
	return 0
}

// Rendezvous ports, as in STUN.
const rendezvousPort, rendezvousPort2 = 3478, 3479

// StartRendezvous starts the UDP rendezvous/echo server in ns on
// rendezvousPort and rendezvousPort2. It answers every datagram from the
// same port:
//
//	ECHO SEQ …      -> ECHO SEQ IP:PORT …, padded to the request's length
//	PROBE           -> YOU IP:PORT   (the address it saw: the NAT mapping)
//	REG SESSION NAME-> WAIT, or PEER IP:PORT once the other peer of SESSION
//	                   registered (sent to both)
func (tp *Topology) StartRendezvous(t *testing.T, ns string) *proc {
	t.Helper()
	p := tp.Start(t, ns, "rendezvous-"+strings.TrimPrefix(ns, netnsPrefix+tp.id+"-"), helperBin(t), helperArg, "rendezvous",
		"-ports", fmt.Sprintf("%d,%d", rendezvousPort, rendezvousPort2))
	if !p.waitLog("rendezvous: listening", 1, 15*time.Second) {
		p.dump(t)
		t.Fatalf("rendezvous in %s did not start (%s)", ns, p.exitDesc())
	}
	return p
}

func helperRendezvous(args []string) error {
	fs := flag.NewFlagSet("rendezvous", flag.ContinueOnError)
	portList := fs.String("ports", "3478", "comma-separated UDP ports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	type reg struct {
		conn *net.UDPConn
		addr *net.UDPAddr
	}
	var mu sync.Mutex
	sessions := map[string]map[string]reg{} // session -> name -> where it registered
	var conns []*net.UDPConn
	for _, ps := range strings.Split(*portList, ",") {
		port, err := strconv.Atoi(ps)
		if err != nil {
			return err
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		if err != nil {
			return err
		}
		conns = append(conns, c)
	}
	serve := func(c *net.UDPConn) {
		buf := make([]byte, 65536)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			msg := buf[:n]
			port := c.LocalAddr().(*net.UDPAddr).Port
			f := strings.Fields(string(msg[:min(n, 200)]))
			switch {
			case len(f) >= 2 && f[0] == "ECHO":
				reply := []byte("ECHO " + f[1] + " " + from.String() + " ")
				for len(reply) < n {
					reply = append(reply, '.')
				}
				_, _ = c.WriteToUDP(reply, from)
			case len(f) == 3 && f[0] == "REG":
				fmt.Fprintf(os.Stderr, "rendezvous :%d: REG %s %s from %s\n", port, f[1], f[2], from)
				mu.Lock()
				s := sessions[f[1]]
				if s == nil {
					s = map[string]reg{}
					sessions[f[1]] = s
				}
				s[f[2]] = reg{c, from}
				var peers []reg
				if len(s) == 2 {
					for _, r := range s {
						peers = append(peers, r)
					}
				}
				mu.Unlock()
				if peers == nil {
					_, _ = c.WriteToUDP([]byte("WAIT"), from)
					continue
				}
				for i, r := range peers {
					other := peers[1-i].addr
					_, _ = r.conn.WriteToUDP([]byte("PEER "+other.String()), r.addr)
				}
			default:
				fmt.Fprintf(os.Stderr, "rendezvous :%d: %q from %s\n", port, truncBytes(msg, 40), from)
				_, _ = c.WriteToUDP([]byte("YOU "+from.String()), from)
			}
		}
	}
	for _, c := range conns {
		go serve(c)
	}
	fmt.Fprintf(os.Stderr, "rendezvous: listening on udp ports %s\n", *portList)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	for _, c := range conns {
		c.Close()
	}
	fmt.Fprintln(os.Stderr, "rendezvous: stopped")
	return nil
}

// ProbeResult is what the probe helper found.
type ProbeResult struct {
	Sent     int       `json:"sent"`
	Replies  int       `json:"replies"`  // distinct sequence numbers answered
	Observed string    `json:"observed"` // our address as the server saw it
	RTTs     []float64 `json:"rtts_ms"`  // of the answered ones, in order sent
}

// MinRTT and MedianRTT of the answered probes (0 if none).
func (r ProbeResult) MinRTT() time.Duration    { return r.rttAt(0) }
func (r ProbeResult) MedianRTT() time.Duration { return r.rttAt(len(r.RTTs) / 2) }

func (r ProbeResult) rttAt(i int) time.Duration {
	if len(r.RTTs) == 0 {
		return 0
	}
	s := append([]float64(nil), r.RTTs...)
	sort.Float64s(s)
	return time.Duration(s[i] * float64(time.Millisecond))
}

// ProbeOpts shapes a probe; zero values take the defaults.
type ProbeOpts struct {
	LocalPort int           // source port (0: any)
	Count     int           // datagrams (default 1)
	Size      int           // bytes each (default 64)
	Interval  time.Duration // between sends (default 10ms)
	Wait      time.Duration // for answers after the last send (default 1s)
}

// Probe sends ECHO datagrams from ns to target (IP:PORT, a rendezvous
// server) and reports what came back.
func (tp *Topology) Probe(t *testing.T, ns, target string, o ProbeOpts) ProbeResult {
	t.Helper()
	o = o.withDefaults()
	timeout := time.Duration(o.Count)*o.Interval + o.Wait + 20*time.Second
	r := tp.Run(timeout, ns, helperBin(t), helperArg, "probe", "-to", target, "-lport", strconv.Itoa(o.LocalPort),
		"-count", strconv.Itoa(o.Count), "-size", strconv.Itoa(o.Size),
		"-interval", o.Interval.String(), "-wait", o.Wait.String())
	var res ProbeResult
	if r.Code != 0 || json.Unmarshal(r.Stdout, &res) != nil {
		t.Fatalf("probe from %s to %s: %s", ns, target, r)
	}
	return res
}

func (o ProbeOpts) withDefaults() ProbeOpts {
	if o.Count <= 0 {
		o.Count = 1
	}
	if o.Size <= 0 {
		o.Size = 64
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Millisecond
	}
	if o.Wait <= 0 {
		o.Wait = time.Second
	}
	return o
}

func helperProbe(args []string) error {
	fs := flag.NewFlagSet("probe", flag.ContinueOnError)
	to := fs.String("to", "", "IP:PORT")
	var o ProbeOpts
	fs.IntVar(&o.LocalPort, "lport", 0, "source port")
	fs.IntVar(&o.Count, "count", 1, "datagrams")
	fs.IntVar(&o.Size, "size", 64, "bytes per datagram")
	fs.DurationVar(&o.Interval, "interval", 10*time.Millisecond, "between sends")
	fs.DurationVar(&o.Wait, "wait", time.Second, "for answers after the last send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o = o.withDefaults()
	raddr, err := net.ResolveUDPAddr("udp4", *to)
	if err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: o.LocalPort})
	if err != nil {
		return err
	}
	defer c.Close()

	sentAt := make([]time.Time, o.Count)
	rtts := make([]float64, o.Count)
	var mu sync.Mutex
	var observed string
	replies := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			now := time.Now()
			f := strings.Fields(string(buf[:min(n, 200)]))
			if len(f) < 3 || f[0] != "ECHO" {
				continue
			}
			seq, err := strconv.Atoi(f[1])
			mu.Lock()
			if err == nil && seq >= 0 && seq < o.Count && !sentAt[seq].IsZero() && rtts[seq] == 0 {
				rtts[seq] = float64(now.Sub(sentAt[seq])) / float64(time.Millisecond)
				if rtts[seq] == 0 {
					rtts[seq] = 1e-6
				}
				replies++
				observed = f[2]
			}
			all := replies == o.Count
			mu.Unlock()
			if all {
				return
			}
		}
	}()
	sent := 0
	for seq := 0; seq < o.Count; seq++ {
		msg := []byte(fmt.Sprintf("ECHO %d ", seq))
		for len(msg) < o.Size {
			msg = append(msg, '.')
		}
		mu.Lock()
		sentAt[seq] = time.Now()
		mu.Unlock()
		if _, err := c.WriteToUDP(msg, raddr); err == nil {
			sent++
		}
		if seq < o.Count-1 {
			time.Sleep(o.Interval)
		}
	}
	select {
	case <-done:
	case <-time.After(o.Wait):
	}
	c.Close()
	<-done
	res := ProbeResult{Sent: sent, Replies: replies, Observed: observed}
	for _, r := range rtts {
		if r > 0 {
			res.RTTs = append(res.RTTs, r)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// PunchResult is what one side of a hole-punching attempt saw.
type PunchResult struct {
	Name     string   `json:"name"`
	Mapped   []string `json:"mapped"` // as seen by the rendezvous on its two ports
	Peer     string   `json:"peer"`   // the other side's mapping, from the rendezvous
	Got      bool     `json:"got"`    // a punch from the peer arrived
	From     string   `json:"from"`   // where it came from
	Sent     int      `json:"sent"`
	Received int      `json:"received"`
}

// EndpointIndependent reports whether both rendezvous ports saw one mapping.
func (r PunchResult) EndpointIndependent() bool {
	return len(r.Mapped) == 2 && r.Mapped[0] == r.Mapped[1]
}

// Punch runs udp_punch-style hole punching between dev and cli, both from
// local port lport, through the rendezvous server on pub (StartRendezvous
// first): each learns its mapping and the other's, then both send to the
// other's mapping from the same socket every 100ms for duration. cli starts
// cliLate after dev, so dev's first punches reach nat2 unsolicited (0: both
// start when the rendezvous pairs them).
func (tp *Topology) Punch(t *testing.T, session string, lport int, duration, cliLate time.Duration) (dev, cli PunchResult) {
	t.Helper()
	var wg sync.WaitGroup
	res := make([]PunchResult, 2)
	errs := make([]error, 2)
	for i, side := range []struct {
		ns, name string
		late     time.Duration
	}{{tp.Dev, "dev", 0}, {tp.Cli, "cli", cliLate}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := tp.Run(side.late+duration+30*time.Second, side.ns, helperBin(t), helperArg, "punch",
				"-name", side.name, "-session", session, "-rendezvous", tp.PubIP, "-lport", strconv.Itoa(lport),
				"-duration", duration.String(), "-late", side.late.String())
			if r.Code != 0 || json.Unmarshal(r.Stdout, &res[i]) != nil {
				errs[i] = fmt.Errorf("punch helper in %s: %s", side.ns, r)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return res[0], res[1]
}

func helperPunch(args []string) error {
	fs := flag.NewFlagSet("punch", flag.ContinueOnError)
	name := fs.String("name", "peer", "this side's name")
	session := fs.String("session", "s", "pairs the two sides at the rendezvous")
	rv := fs.String("rendezvous", "", "rendezvous IP (ports 3478 and 3479)")
	lport := fs.Int("lport", 40000, "local UDP port")
	duration := fs.Duration("duration", 3*time.Second, "how long to punch")
	late := fs.Duration("late", 0, "wait this long after pairing before the first punch")
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: *lport})
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 2048)
	// ask sends msg to dst every 200ms until an answer starting with one of
	// want arrives (10s at most).
	ask := func(dst *net.UDPAddr, msg string, want ...string) (string, error) {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if _, err := c.WriteToUDP([]byte(msg), dst); err != nil {
				return "", err
			}
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			for {
				n, _, err := c.ReadFromUDP(buf)
				if err != nil {
					break // timeout: send again
				}
				for _, w := range want {
					if strings.HasPrefix(string(buf[:n]), w) {
						return string(buf[:n]), nil
					}
				}
			}
		}
		return "", fmt.Errorf("no %v answer to %q from %s", want, msg, dst)
	}
	res := PunchResult{Name: *name}
	for _, port := range []int{rendezvousPort, rendezvousPort2} {
		ans, err := ask(&net.UDPAddr{IP: net.ParseIP(*rv), Port: port}, "PROBE", "YOU ")
		if err != nil {
			return err
		}
		res.Mapped = append(res.Mapped, strings.TrimPrefix(ans, "YOU "))
	}
	ans, err := ask(&net.UDPAddr{IP: net.ParseIP(*rv), Port: rendezvousPort}, "REG "+*session+" "+*name, "PEER ")
	if err != nil {
		return err
	}
	res.Peer = strings.TrimPrefix(ans, "PEER ")
	peer, err := net.ResolveUDPAddr("udp4", res.Peer)
	if err != nil {
		return err
	}
	time.Sleep(*late) // datagrams arriving meanwhile wait in the socket
	end := time.Now().Add(*duration)
	for time.Now().Before(end) {
		if _, err := c.WriteToUDP([]byte("PUNCH from "+*name), peer); err == nil {
			res.Sent++
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				break
			}
			if strings.HasPrefix(string(buf[:n]), "PUNCH from ") {
				res.Received++
				if !res.Got {
					res.Got, res.From = true, from.String()
				}
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

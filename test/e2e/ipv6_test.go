//go:build linux

package e2e

// IPv6 on a Topology: AddIPv6 gives the internet of netns_test.go an IPv6
// side (the documentation prefix 2001:db8::/32), without NAT, as many home
// and mobile networks have it:
//
//	namespace  IPv6 address                role
//	pub        2001:db8::1 (wan)           the relay, also on 203.0.113.1
//	nat1       2001:db8::11 (wan)          dev's router, 2001:db8:1::1 (lan)
//	nat2       2001:db8::12 (wan)          cli's router, 2001:db8:2::1 (lan)
//	dev        2001:db8:1::2 (eth0)        default route via nat1
//	cli        2001:db8:2::2 (eth0)        default route via nat2
//
// A home with IPv6 has a router that forwards it, but, like home routers
// and carriers, drops what nobody inside asked for (ip6tables: FORWARD from
// wan, conntrack NEW or INVALID). Two hosts get a direct path through two
// such firewalls only by sending to each other at about the same time,
// as through two cone NATs, but with no mapping to learn: the address a
// host has is the one the world sees. A home may keep its IPv4 (dual
// stack), or lose it (IPv6 only: its host's IPv4 address and route go).
// Addresses are added with nodad, so they work at once.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// HomeStack is which IP families a home of a Topology has.
type HomeStack string

const (
	// StackIPv4 is the home as NewTopology made it: IPv4 behind a NAT.
	StackIPv4 HomeStack = "ipv4"
	// StackIPv6 is IPv6 only, behind a stateful firewall.
	StackIPv6 HomeStack = "ipv6"
	// StackDual is both: IPv4 behind the NAT, IPv6 behind the firewall.
	StackDual HomeStack = "dual"
)

// Topology6 holds the IPv6 addresses AddIPv6 gave a Topology; a home
// without IPv6 has none.
type Topology6 struct {
	PubIP, FW1IP, FW2IP, DevIP, CliIP string
}

// AddIPv6 gives pub an IPv6 address and dev's (nat1) and cli's (nat2)
// homes IPv6 as dev and cli say. It needs ip6tables (Debian's iptables
// package has it).
func (tp *Topology) AddIPv6(t *testing.T, dev, cli HomeStack) Topology6 {
	t.Helper()
	ip6tables, err := lookPath("ip6tables")
	if err != nil {
		msg := "IPv6 topology: missing ip6tables (as root: apt-get install iptables)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	start := time.Now()
	t6 := Topology6{PubIP: "2001:db8::1"}
	enable := func(ns string, ifs ...string) {
		// First no duplicate address detection, then IPv6: otherwise the
		// link-local addresses stay tentative for a second, and so does
		// neighbour discovery (the first packet to a new neighbour waits
		// ~1 s, which a network in use would not make it wait).
		dad := map[string]string{"net/ipv6/conf/all/accept_dad": "0", "net/ipv6/conf/default/accept_dad": "0"}
		on := map[string]string{"net/ipv6/conf/all/disable_ipv6": "0", "net/ipv6/conf/default/disable_ipv6": "0"}
		for _, i := range ifs {
			dad["net/ipv6/conf/"+i+"/accept_dad"] = "0"
			dad["net/ipv6/conf/"+i+"/accept_ra"] = "0" // routes are set here, not learnt
			on["net/ipv6/conf/"+i+"/disable_ipv6"] = "0"
		}
		tp.sysctl(t, ns, dad)
		tp.sysctl(t, ns, on)
	}
	enable(tp.Inet, bridgeIf)
	enable(tp.Pub, wanIf)
	tp.mustHost(t, netnsTools.ip, "-n", tp.Pub, "-6", "addr", "add", t6.PubIP+"/64", "dev", wanIf, "nodad")
	for _, h := range []struct {
		stack      HomeStack
		fw, host   string
		wan, net   string // the router's public address, the home's /64
		fwIP, hIP  *string
		other, via string // the other home's /64 and its router
	}{
		{dev, tp.NAT1, tp.Dev, "2001:db8::11", "2001:db8:1", &t6.FW1IP, &t6.DevIP, "2001:db8:2::/64", "2001:db8::12"},
		{cli, tp.NAT2, tp.Cli, "2001:db8::12", "2001:db8:2", &t6.FW2IP, &t6.CliIP, "2001:db8:1::/64", "2001:db8::11"},
	} {
		switch h.stack {
		case StackIPv4:
			continue
		case StackIPv6, StackDual:
		default:
			t.Fatalf("AddIPv6: home stack %q, want %q, %q or %q", h.stack, StackIPv4, StackIPv6, StackDual)
		}
		*h.fwIP, *h.hIP = h.wan, h.net+"::2"
		enable(h.fw, wanIf, lanIf)
		enable(h.host, hostIf)
		tp.sysctl(t, h.fw, map[string]string{"net/ipv6/conf/all/forwarding": "1"})
		tp.mustHost(t, netnsTools.ip, "-n", h.fw, "-6", "addr", "add", h.wan+"/64", "dev", wanIf, "nodad")
		tp.mustHost(t, netnsTools.ip, "-n", h.fw, "-6", "addr", "add", h.net+"::1/64", "dev", lanIf, "nodad")
		tp.mustHost(t, netnsTools.ip, "-n", h.host, "-6", "addr", "add", h.net+"::2/64", "dev", hostIf, "nodad")
		tp.mustHost(t, netnsTools.ip, "-n", h.host, "-6", "route", "add", "default", "via", h.net+"::1")
		tp.mustHost(t, netnsTools.ip, "-n", tp.Pub, "-6", "route", "add", h.net+"::/64", "via", h.wan)
		tp.mustHost(t, netnsTools.ip, "-n", h.fw, "-6", "route", "add", h.other, "via", h.via)
		tp.must(t, h.fw, ip6tables, "-w", "-A", "FORWARD", "-i", wanIf, "-m", "conntrack", "--ctstate", "NEW,INVALID", "-j", "DROP")
		tp.SetUDPTimeout(t, h.fw, natUDPTimeout)
		if h.stack == StackIPv6 {
			// Its IPv4 goes: no address on the home's link, no route.
			tp.mustHost(t, netnsTools.ip, "-n", h.host, "-4", "addr", "flush", "dev", hostIf)
		}
	}
	t.Logf("IPv6 added (dev %s, cli %s) in %s", dev, cli, time.Since(start).Round(time.Millisecond))
	return t6
}

// firewallDrops is how many packets the IPv6 firewall of the router ns
// (AddIPv6) has dropped so far.
func (tp *Topology) firewallDrops(t *testing.T, ns string) uint64 {
	t.Helper()
	ip6tables, err := lookPath("ip6tables")
	if err != nil {
		t.Fatal(err)
	}
	r := tp.must(t, ns, ip6tables, "-w", "-L", "FORWARD", "-v", "-x", "-n")
	for _, line := range strings.Split(string(r.Stdout), "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[2] == "DROP" {
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("ip6tables -L FORWARD in %s: %q: %v", ns, line, err)
			}
			return n
		}
	}
	t.Fatalf("ip6tables -L FORWARD in %s: no DROP rule:\n%s", ns, r.Stdout)
	return 0
}

// relay6 is [addr]:natRelayPort.
func relay6(addr string) string { return fmt.Sprintf("[%s]:%d", addr, natRelayPort) }

// An IPv6-only device and client, each behind a firewall that drops
// unsolicited inbound, with the relay on IPv6: ssh through socksd works
// from the start, and the path ends direct.
func TestIPv6OnlyDirect(t *testing.T) {
	needNetns(t)
	requireSystem(t)
	tp := NewTopology(t, NATCone, NATCone)
	t6 := tp.AddIPv6(t, StackIPv6, StackIPv6)
	// Nothing of IPv4 is left between the homes and the relay.
	for _, ns := range []string{tp.Dev, tp.Cli} {
		if r := tp.Run(5*time.Second, ns, netnsTools.ip, "-4", "route", "get", tp.PubIP); r.Code == 0 {
			t.Fatalf("%s still has an IPv4 route to %s: %s", ns, tp.PubIP, r.Stdout)
		}
	}
	// The firewalls drop what nobody inside asked for.
	for _, fw := range []struct{ ns, host string }{{tp.NAT1, t6.DevIP}, {tp.NAT2, t6.CliIP}} {
		before := tp.firewallDrops(t, fw.ns)
		tp.must(t, tp.Pub, "bash", "-c", fmt.Sprintf("echo unsolicited > /dev/udp/%s/9", fw.host))
		if got := tp.firewallDrops(t, fw.ns); got != before+1 {
			t.Fatalf("%s dropped %d unsolicited datagrams to %s, want 1", fw.ns, got-before, fw.host)
		}
	}
	relay := relay6(t6.PubIP)
	w := startWorld(t, tp, worldRelay{listen: relay, dev: relay, cli: relay})
	rxS, txS := tp.Counters(t)
	start := time.Now()
	w.firstCommand(t)
	w.waitPath(t, "direct", 15*time.Second)
	toDirect := time.Since(start)
	p := w.peer(t)
	if !strings.HasPrefix(p.Via, "["+t6.DevIP+"]:") {
		t.Fatalf("direct path via %q, want the device's IPv6 address %s", p.Via, t6.DevIP)
	}
	rx0, tx0 := tp.Counters(t)
	const size = 8 << 20
	r := w.ssh(60*time.Second, fmt.Sprintf("head -c %d /dev/zero", size))
	if r.Code != 0 || len(r.Stdout) != size {
		t.Fatalf("8 MiB download: %d bytes, %s", len(r.Stdout), r)
	}
	rx1, tx1 := tp.Counters(t)
	carried := (rx1 - rx0) + (tx1 - tx0)
	t.Logf("IPv6 only: first ssh to direct (via %s) in %v; the relay's interface carried %d bytes during a %d-byte transfer (%.2f%%), %d from the first ssh on",
		p.Via, toDirect.Round(10*time.Millisecond), carried, size, 100*float64(carried)/size, (rx1-rxS)+(tx1-txS))
	if carried > size/10 {
		t.Fatalf("relay carried %d bytes (%.1f%%) of a direct transfer, want < 10%%", carried, 100*float64(carried)/size)
	}
}

// One relay socket on [::]:7443 serves an IPv6-only device and an
// IPv4-only client (behind a NAT): both register, and ssh crosses the relay
// between the families — relayed, as no direct path joins them.
func TestIPv6DualStackRelay(t *testing.T) {
	needNetns(t)
	requireSystem(t)
	tp := NewTopology(t, NATCone, NATCone)
	t6 := tp.AddIPv6(t, StackIPv6, StackIPv4)
	w := startWorld(t, tp, worldRelay{listen: fmt.Sprintf("[::]:%d", natRelayPort),
		dev: relay6(t6.PubIP), cli: fmt.Sprintf("%s:%d", tp.PubIP, natRelayPort)})
	w.firstCommand(t)
	// The relay saw each at its own family's address, the IPv4 client
	// unmapped, as an IPv4 relay would have; and that is the address each
	// was told it has (its first candidate).
	for _, c := range []struct {
		p    *proc
		want string
	}{
		{w.relay, "[" + t6.DevIP + "]:"}, {w.relay, tp.NAT2IP + ":"},
		{w.device, "[" + t6.DevIP + "]:"}, {w.socksd, tp.NAT2IP + ":"},
	} {
		if !c.p.waitLog(c.want, 1, 5*time.Second) {
			t.Fatalf("log never names %s:\n%s", c.want, tail(c.p.log(), 30, 8<<10))
		}
		if strings.Contains(c.p.log(), "::ffff:") {
			t.Fatalf("an IPv4-mapped address in the log:\n%s", tail(c.p.log(), 30, 8<<10))
		}
	}
	r := w.ssh(30*time.Second, "head -c 1048576 /dev/zero | sha256sum")
	if r.Code != 0 {
		t.Fatalf("transfer: %s", r)
	}
	if p, via := w.path(t); p != "relayed" {
		t.Fatalf("path %q via %s between an IPv6-only device and an IPv4-only client, want relayed", p, via)
	}
}

// Dual-stack homes, the device and the client each behind an IPv4 NAT and
// an IPv6 firewall, the relay on [::]:7443 reached over IPv4: both families
// are probed, and the path ends direct over IPv6 (happy eyeballs: the
// families answer within a few milliseconds of each other).
func TestIPv6DualStackPrefersIPv6(t *testing.T) {
	needNetns(t)
	requireSystem(t)
	tp := NewTopology(t, NATCone, NATCone)
	t6 := tp.AddIPv6(t, StackDual, StackDual)
	relay := fmt.Sprintf("%s:%d", tp.PubIP, natRelayPort)
	w := startWorld(t, tp, worldRelay{listen: fmt.Sprintf("[::]:%d", natRelayPort), dev: relay, cli: relay})
	start := time.Now()
	w.firstCommand(t)
	w.waitPath(t, "direct", 15*time.Second)
	want := "[" + t6.DevIP + "]:"
	for {
		p := w.peer(t)
		if p.Path == "direct" && strings.HasPrefix(p.Via, want) {
			t.Logf("dual stack: direct over IPv6 (%s) %v after the first ssh started", p.Via, time.Since(start).Round(10*time.Millisecond))
			break
		}
		// Under load the first pongs of the two families may differ by
		// more than the 10 ms margin; the next full probe rounds (every
		// 10 s) weigh them again.
		if time.Since(start) > 35*time.Second {
			t.Fatalf("path %s via %s, want direct via %s…\nsocksd:\n%s", p.Path, p.Via, want, tail(w.socksd.log(), 30, 8<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

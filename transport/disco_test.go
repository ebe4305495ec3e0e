package transport

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// testIfaces is the interface list the scope tests inject: a home LAN, a
// VPN written the way Go gives IPv4 addresses (16 bytes), a CGNAT
// interface, a ULA prefix, loopback, link-local, and a public address.
var testIfaces = []net.Addr{
	&net.IPNet{IP: net.IPv4(192, 168, 1, 10).To4(), Mask: net.CIDRMask(24, 32)},
	&net.IPNet{IP: net.IPv4(10, 8, 0, 2), Mask: net.CIDRMask(16, 32)},
	&net.IPNet{IP: net.IPv4(100, 101, 0, 2).To4(), Mask: net.CIDRMask(16, 32)},
	&net.IPNet{IP: net.ParseIP("fd00:1::5"), Mask: net.CIDRMask(64, 128)},
	&net.IPNet{IP: net.IPv4(127, 0, 0, 1).To4(), Mask: net.CIDRMask(8, 32)},
	&net.IPNet{IP: net.IPv6loopback, Mask: net.CIDRMask(128, 128)},
	&net.IPNet{IP: net.ParseIP("fe80::1"), Mask: net.CIDRMask(64, 128)},
	&net.IPNet{IP: net.IPv4(203, 0, 113, 5).To4(), Mask: net.CIDRMask(24, 32)},
	&net.IPAddr{IP: net.IPv4(198, 18, 0, 1)}, // not an IPNet: ignored
}

func TestCandidateScope(t *testing.T) {
	tests := []struct {
		addr     string
		want     bool // for a node whose relay is not on loopback
		loopback bool // for one whose relay is
	}{
		{"198.51.100.7", true, true},
		{"203.0.113.77", true, true}, // public, on one of our subnets too
		{"2001:db8::1", true, true},
		{"::ffff:198.51.100.7", true, true},
		{"192.168.1.77", true, true}, // our LAN
		{"::ffff:192.168.1.77", true, true},
		{"192.168.2.77", false, false}, // someone else's LAN
		{"10.8.200.1", true, true},     // inside 10.8/16
		{"10.9.0.1", false, false},
		{"172.16.0.1", false, false},
		{"100.101.3.4", true, true}, // our CGNAT prefix
		{"100.64.0.1", false, false},
		{"fd00:1::9", true, true},
		{"fd00:2::9", false, false},
		{"fe80::2", false, false},
		{"169.254.1.1", false, false},
		{"224.0.0.1", false, false},
		{"239.255.255.250", false, false},
		{"ff02::1", false, false},
		{"0.0.0.0", false, false},
		{"::", false, false},
		{"255.255.255.255", false, false},
		{"192.168.1.255", false, false}, // our LAN's broadcast
		{"203.0.113.255", false, false}, // a public subnet's broadcast
		{"10.8.255.255", false, false},
		{"127.0.0.1", false, true},
		{"127.0.0.2", false, true},
		{"127.255.255.255", false, false}, // loopback's broadcast
		{"::1", false, true},
	}
	for _, lo := range []bool{false, true} {
		s := newScope(lo, testIfaces)
		for _, tt := range tests {
			want := tt.want
			if lo {
				want = tt.loopback
			}
			if got := s.admits(netip.MustParseAddr(tt.addr)); got != want {
				t.Errorf("relay on loopback %v: admits(%s) = %v, want %v", lo, tt.addr, got, want)
			}
		}
		if s.admits(netip.Addr{}) {
			t.Error("admits the zero Addr")
		}
	}
	in := []netip.AddrPort{
		netip.MustParseAddrPort("192.168.2.7:1"), netip.MustParseAddrPort("198.51.100.7:2"),
		netip.MustParseAddrPort("127.0.0.1:3"), netip.MustParseAddrPort("192.168.1.7:4"),
	}
	want := []netip.AddrPort{in[1], in[3]}
	if got := newScope(false, testIfaces).admitted(slices.Clone(in)); !slices.Equal(got, want) {
		t.Errorf("admitted = %v, want %v", got, want)
	}
	// With no interfaces, no private address is in scope, public ones are.
	if s := newScope(false, nil); s.admits(netip.MustParseAddr("192.168.1.77")) || !s.admits(netip.MustParseAddr("198.51.100.7")) {
		t.Error("a node without interfaces: want private out, public in")
	}
}

// A node's scope follows where its relay is: loopback candidates only for
// a node that meets its peers on this machine.
func TestNodeScopeFollowsRelay(t *testing.T) {
	tn := newTestNet(t)
	n := tn.node(t)
	lo := netip.MustParseAddr("127.0.0.1")
	if !n.scope().admits(lo) {
		t.Fatal("relay on loopback: loopback out of scope")
	}
	n.SetRoutes(RelayRoute{Addr: netip.MustParseAddrPort("198.51.100.1:7443")}, nil)
	if n.scope().admits(lo) {
		t.Fatal("relay elsewhere: loopback in scope")
	}
}

func TestReplayWindow(t *testing.T) {
	steps := []struct {
		seq  uint64
		want bool
	}{
		{0, false}, // never sent
		{1, true},
		{1, false},
		{3, true},
		{2, true}, // overtaken, still fresh
		{2, false},
		{3, false},
		{100, true},
		{37, true}, // 63 below the top
		{37, false},
		{36, false}, // 64 below: too old
		{99, true},
		{1000, true}, // a jump past the window forgets it
		{999, true},
		{100, false},
		{1 << 63, true},
		{1<<63 - 63, true},
		{1<<63 - 64, false},
	}
	var w replayWindow
	for i, s := range steps {
		if got := w.accept(s.seq); got != s.want {
			t.Fatalf("step %d: accept(%d) = %v, want %v", i, s.seq, got, s.want)
		}
	}
}

// liveStep is one heartbeat of TestPathLiveness: what the pinger sent
// direct before its ping, and what the peer then says it received.
type liveStep struct {
	sent, got counts
	after     time.Duration // since the previous ping; pathHeartbeat if zero
	restart   bool          // the peer's counts start again from got
}

func TestPathLiveness(t *testing.T) {
	bulk := counts{1 << 20, 800}
	hole := counts{}
	tests := []struct {
		name  string
		steps []liveStep
		dead  int // the step whose pong kills the path; -1 for none
	}{
		{"all arrives", []liveStep{{bulk, bulk, 0, false}, {bulk, bulk, 0, false}, {bulk, bulk, 0, false}}, -1},
		{"40% lost is QUIC's to repair", []liveStep{
			{bulk, counts{bulk.bytes * 6 / 10, 480}, 0, false},
			{bulk, counts{bulk.bytes * 6 / 10, 480}, 0, false},
			{bulk, counts{bulk.bytes * 6 / 10, 480}, 0, false},
		}, -1},
		{"idle", []liveStep{{}, {}, {}, {}}, -1},
		{"one lost keep-alive", []liveStep{{counts{60, 1}, hole, 0, false}, {}, {}, {}, {}}, -1},
		{"black hole", []liveStep{{bulk, bulk, 0, false}, {bulk, hole, 0, false}}, 1},
		{"trickle into a hole: the second packet missing kills", []liveStep{
			{bulk, bulk, 0, false}, {counts{1200, 1}, hole, 0, false}, {counts{1200, 1}, hole, 0, false},
		}, 2},
		{"a window half good, then a hole", []liveStep{
			{bulk, counts{bulk.bytes * 6 / 10, 480}, 0, false}, {counts{1200, 1}, hole, 0, false}, {counts{1200, 1}, hole, 0, false},
		}, 2},
		{"garbage frames fill in the count, not the bytes", []liveStep{
			{counts{128 << 10, 100}, counts{1 << 10, 100}, 0, false},
		}, 0},
		{"under half, too few missing", []liveStep{{counts{1200, 1}, counts{100, 1}, 0, false}}, -1},
		{"within a heartbeat: not yet", []liveStep{{bulk, hole, pathHeartbeat / 2, false}}, -1},
		{"... and at the next pong", []liveStep{{bulk, hole, pathHeartbeat / 2, false}, {bulk, hole, pathHeartbeat / 2, false}}, 1},
		{"the peer's counts start again", []liveStep{{bulk, bulk, 0, false}, {bulk, counts{5, 1}, 0, true}, {bulk, bulk, 0, false}}, -1},
	}
	const rtt = 10 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPath()
			if !confirm(t, p, addrA, rtt, t0) {
				t.Fatal("first pong did not confirm")
			}
			at := t0.Add(-rtt)
			var rcvd counts
			for i, s := range tt.steps {
				p.DirectOut.Add(s.sent.bytes)
				p.DirectOutPkts.Add(s.sent.pkts)
				if s.after == 0 {
					s.after = pathHeartbeat
				}
				at = at.Add(s.after)
				m := ping(t, p, addrA, at)
				if s.restart {
					rcvd = s.got
				} else {
					rcvd = counts{rcvd.bytes + s.got.bytes, rcvd.pkts + s.got.pkts}
				}
				out := answer(p, m, rcvd, addrA, at.Add(rtt))
				if !out.matched {
					t.Fatalf("step %d: pong not matched", i)
				}
				if out.dead != (i == tt.dead) {
					t.Fatalf("step %d: dead = %v, want it at step %d", i, out.dead, tt.dead)
				}
				if _, ok := p.current(at.Add(rtt)); ok == out.dead {
					t.Fatalf("step %d: path in use %v after dead = %v", i, ok, out.dead)
				}
				if out.dead {
					return
				}
			}
		})
	}
}

// kill confirms addr as p's path at at and has it judged dead at the next
// heartbeat, the peer having received nothing ever; it returns the time
// of the verdict.
func kill(t *testing.T, p *path, addr netip.AddrPort, at time.Time) time.Time {
	t.Helper()
	if out := answer(p, ping(t, p, addr, at), counts{}, addr, at); !out.confirmed {
		t.Fatalf("%v not confirmed at %v: %+v", addr, at.Sub(t0), out)
	}
	p.DirectOut.Add(1 << 20)
	p.DirectOutPkts.Add(800)
	at = at.Add(pathHeartbeat)
	if out := answer(p, ping(t, p, addr, at), counts{}, addr, at); !out.dead {
		t.Fatalf("%v not judged dead at %v: %+v", addr, at.Sub(t0), out)
	}
	return at
}

// An address judged dead does not carry the path again for deadHold,
// doubling while it keeps dying; another address may at once.
func TestDeadAddressBarred(t *testing.T) {
	p := testPath()
	died := kill(t, p, addrA, t0)
	if a, ok := p.current(died); ok {
		t.Fatalf("dead path still in use: %v", a)
	}
	if ts := p.targets(died); slices.Contains(ts, addrA) {
		t.Fatalf("targets %v include the barred address", ts)
	}
	// Pongs from the barred address still answer pings, but do not
	// confirm it; data frames still come in from it (byAddr is not
	// changed), only our packets stop going there.
	if out := answer(p, ping(t, p, addrA, died.Add(time.Second)), counts{}, addrA, died.Add(time.Second)); !out.matched || out.confirmed {
		t.Fatalf("pong from the barred address: %+v", out)
	}
	if !confirm(t, p, addrB, time.Millisecond, died.Add(time.Second)) {
		t.Fatal("another address not confirmed while the dead one is barred")
	}
	// B is silent from then on: stale long before A's hold ends.

	holds := []time.Duration{deadHold, 2 * deadHold, 4 * deadHold, 8 * deadHold, deadHoldMax, deadHoldMax}
	for i, hold := range holds {
		end := died.Add(hold)
		if confirm(t, p, addrA, time.Millisecond, end.Add(-time.Millisecond)) {
			t.Fatalf("death %d: confirmed before the hold of %v ended", i+1, hold)
		}
		died = kill(t, p, addrA, end)
	}
	// Clean for deadHoldMax after its hold: forgiven.
	end := died.Add(deadHoldMax + deadHoldMax)
	died = kill(t, p, addrA, end)
	if b := p.barred[addrA]; b.hold != deadHold || !b.until.Equal(died.Add(deadHold)) {
		t.Fatalf("after a clean spell: hold %v until %v, want %v", b.hold, b.until.Sub(died), deadHold)
	}
	// The barred set is bounded.
	for i := range 3 * maxBarred {
		p.barLocked(netip.AddrPortFrom(netip.MustParseAddr("198.51.100.7"), uint16(i+1)), died)
	}
	if len(p.barred) > maxBarred {
		t.Fatalf("%d barred addresses, want at most %d", len(p.barred), maxBarred)
	}
}

// A probe round pings the peer's own sources first, then its candidates,
// at most maxPingsPerRound of them, and the next round starts where the
// last one stopped.
func TestProbeRound(t *testing.T) {
	addr := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", i)), 41641)
	}
	p := testPath()
	for i := range maxCandidates {
		p.remote = append(p.remote, addr(i))
	}
	p.seen = []netip.AddrPort{addr(100), addr(3), addr(101)} // 3 is a candidate too
	all := p.targets(t0)
	if len(all) != maxCandidates+2 || all[0] != addr(100) || all[1] != addr(3) || all[2] != addr(101) || all[3] != addr(0) {
		t.Fatalf("targets %v: want the sources first, no duplicate", all)
	}
	to, done := p.round(t0)
	if !slices.Equal(to, all[:maxPingsPerRound]) {
		t.Fatalf("first round %v, want %v", to, all[:maxPingsPerRound])
	}
	done(len(to))
	to, done = p.round(t0)
	want := append(slices.Clone(all[maxPingsPerRound:]), all[:maxPingsPerRound-2]...)
	if !slices.Equal(to, want) {
		t.Fatalf("second round %v, want %v", to, want)
	}
	done(3) // the budget ran out after three
	to, _ = p.round(t0)
	if to[0] != all[1] {
		t.Fatalf("third round starts at %v, want %v", to[0], all[1])
	}
}

package transport

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// Path selection on an injected clock: every test starts at t0 and moves
// time by hand; nothing sleeps and nothing touches a socket.

var (
	t0    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	addrA = netip.MustParseAddrPort("192.0.2.1:41641")
	addrB = netip.MustParseAddrPort("198.51.100.7:41641")
)

// testPath is a path with one authorized connection.
func testPath() *path {
	ep := testEndpoint()
	p := newPath(ep, EndpointAddr(ep))
	p.keys = []*discoKey{{secret: []byte("0123456789abcdef0123456789abcdef"), authorized: true}}
	return p
}

// ping records a ping to a at at and returns it.
func ping(t *testing.T, p *path, a netip.AddrPort, at time.Time) discoMsg {
	t.Helper()
	m, _, ok := p.sent(a, at)
	if !ok {
		t.Fatal("no ping: no authorized connection")
	}
	return m
}

// answer delivers the pong to m from from at at, the peer saying it
// received rcvd.
func answer(p *path, m discoMsg, rcvd counts, from netip.AddrPort, at time.Time) pongOutcome {
	return p.pong(m.seq, m.txid, rcvd, from, at)
}

func directClosed(p *path) bool {
	select {
	case <-p.direct:
		return true
	default:
		return false
	}
}

// confirm answers a ping to a sent at rtt before at with a pong at at, and
// reports whether it confirmed the path.
func confirm(t *testing.T, p *path, a netip.AddrPort, rtt time.Duration, at time.Time) bool {
	t.Helper()
	m := ping(t, p, a, at.Add(-rtt))
	return answer(p, m, counts{}, a, at).confirmed
}

func TestPathSwitchToDirect(t *testing.T) {
	rtt := 10 * time.Millisecond
	at := t0.Add(rtt)
	tests := []struct {
		name    string
		seq, tx uint64 // added to the ping's
		from    netip.AddrPort
		want    bool // the pong confirms the path
	}{
		{"pong from the address pinged", 0, 0, addrA, true},
		{"unknown seq", 1, 0, addrA, false},
		{"txid not echoed (a forged pong)", 0, 1, addrA, false},
		{"pong from another address than the ping went to", 0, 0, addrB, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPath()
			m := ping(t, p, addrA, t0)
			if a, ok := p.current(t0); ok || directClosed(p) || p.everBest.Load() {
				t.Fatalf("before any pong: current = %v, %v; direct closed %v; everBest %v", a, ok, directClosed(p), p.everBest.Load())
			}
			got := p.pong(m.seq+tt.seq, m.txid+tt.tx, counts{}, tt.from, at)
			if got.confirmed != tt.want || got.matched != tt.want {
				t.Fatalf("pong = %+v, want confirmed and matched %v", got, tt.want)
			}
			a, ok := p.current(at)
			if !tt.want {
				if ok || directClosed(p) || p.everBest.Load() {
					t.Fatalf("rejected pong changed the path: current = %v, %v; direct closed %v; everBest %v", a, ok, directClosed(p), p.everBest.Load())
				}
				if _, pending := p.pending[m.seq]; !pending {
					t.Fatal("rejected pong consumed the outstanding ping")
				}
				// The genuine pong still counts.
				if !answer(p, m, counts{}, addrA, at).confirmed {
					t.Fatal("genuine pong after a rejected one did not confirm")
				}
				if a, ok := p.current(at); !ok || a != addrA {
					t.Fatalf("current = %v, %v, want %v", a, ok, addrA)
				}
				return
			}
			if !ok || a != addrA {
				t.Fatalf("current = %v, %v, want %v", a, ok, addrA)
			}
			if !directClosed(p) || !p.everBest.Load() {
				t.Fatalf("direct closed %v, everBest %v; want both", directClosed(p), p.everBest.Load())
			}
			if p.bestRTT != rtt {
				t.Fatalf("bestRTT = %v, want %v", p.bestRTT, rtt)
			}
			if len(p.pending) != 0 {
				t.Fatalf("answered ping still pending: %v", p.pending)
			}
			// A replay of the same pong is an unknown seq: it neither
			// reports nor extends the path's trust.
			if out := answer(p, m, counts{}, addrA, at.Add(pathTrust/2)); out.matched || out.confirmed {
				t.Fatalf("replayed pong counted: %+v", out)
			}
			if _, ok := p.current(at.Add(pathTrust + 1)); ok {
				t.Fatal("replayed pong extended the path's trust")
			}
		})
	}
}

func TestPathPongReportsFirstConfirmation(t *testing.T) {
	p := testPath()
	rtt := 10 * time.Millisecond
	steps := []struct {
		name string
		at   time.Time
		want bool
	}{
		{"first confirmation", t0, true},
		{"refresh while fresh", t0.Add(pathHeartbeat), false},
		{"another refresh while fresh", t0.Add(2 * pathHeartbeat), false},
		{"pong after the path went stale", t0.Add(2*pathHeartbeat + pathTrust + 1), true},
	}
	for _, s := range steps {
		if got := confirm(t, p, addrA, rtt, s.at); got != s.want {
			t.Fatalf("%s: pong = %v, want %v", s.name, got, s.want)
		}
	}
}

func TestPathHysteresis(t *testing.T) {
	const bestRTT = 10 * time.Millisecond
	t1 := t0.Add(time.Second) // the best path is fresh at t1
	type pong struct {
		from netip.AddrPort
		rtt  time.Duration
		at   time.Time
	}
	tests := []struct {
		name     string
		pongs    []pong // after addrA was confirmed at t0 with bestRTT
		wantPong bool   // what the last pong reports
		best     netip.AddrPort
		rtt      time.Duration
		bestAt   time.Time
	}{
		{"90% of the RTT does not switch", []pong{{addrB, 9 * time.Millisecond, t1}}, false, addrA, bestRTT, t0},
		{"exactly 80% does not switch", []pong{{addrB, 8 * time.Millisecond, t1}}, false, addrA, bestRTT, t0},
		{"below 80% switches", []pong{{addrB, 8*time.Millisecond - time.Microsecond, t1}}, false, addrB, 8*time.Millisecond - time.Microsecond, t1},
		{"much faster switches", []pong{{addrB, time.Millisecond, t1}}, false, addrB, time.Millisecond, t1},
		{"slower does not switch", []pong{{addrB, 50 * time.Millisecond, t1}}, false, addrA, bestRTT, t0},
		{"pong from the best refreshes it", []pong{{addrA, 9 * time.Millisecond, t1}}, false, addrA, 9 * time.Millisecond, t1},
		{"slower pong from the best refreshes it and its RTT", []pong{{addrA, 20 * time.Millisecond, t1}}, false, addrA, 20 * time.Millisecond, t1},
		{"the bar follows the best's last RTT", []pong{
			{addrA, 20 * time.Millisecond, t1},
			{addrB, 15 * time.Millisecond, t1.Add(time.Second)},
		}, false, addrB, 15 * time.Millisecond, t1.Add(time.Second)},
		{"any path wins once the best is stale", []pong{{addrB, 50 * time.Millisecond, t0.Add(pathTrust + 1)}}, true, addrB, 50 * time.Millisecond, t0.Add(pathTrust + 1)},
		{"a path at the trust boundary is still fresh", []pong{{addrB, 9 * time.Millisecond, t0.Add(pathTrust)}}, false, addrA, bestRTT, t0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := testPath()
			if !confirm(t, p, addrA, bestRTT, t0) {
				t.Fatal("first pong did not confirm")
			}
			var got bool
			for _, pg := range tt.pongs {
				got = confirm(t, p, pg.from, pg.rtt, pg.at)
			}
			if got != tt.wantPong {
				t.Errorf("last pong = %v, want %v", got, tt.wantPong)
			}
			if p.best != tt.best || p.bestRTT != tt.rtt || !p.bestAt.Equal(tt.bestAt) {
				t.Errorf("best %v rtt %v at %v, want %v rtt %v at %v",
					p.best, p.bestRTT, p.bestAt.Sub(t0), tt.best, tt.rtt, tt.bestAt.Sub(t0))
			}
			if a, ok := p.current(tt.bestAt.Add(pathTrust)); !ok || a != tt.best {
				t.Errorf("current at bestAt+pathTrust = %v, %v, want %v", a, ok, tt.best)
			}
		})
	}
}

func TestPathFallsBackToRelay(t *testing.T) {
	p := testPath()
	if !confirm(t, p, addrA, 10*time.Millisecond, t0) {
		t.Fatal("first pong did not confirm")
	}
	tests := []struct {
		after time.Duration // since the last pong
		ok    bool
	}{
		{0, true},
		{pathHeartbeat, true},
		{pathTrust - 1, true},
		{pathTrust, true},
		{pathTrust + 1, false},
		{pathTrust + pathHeartbeat, false},
		{time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.after), func(t *testing.T) {
			a, ok := p.current(t0.Add(tt.after))
			if ok != tt.ok || ok && a != addrA || !ok && a.IsValid() {
				t.Fatalf("current = %v, %v, want ok %v", a, ok, tt.ok)
			}
			if !p.everBest.Load() || !directClosed(p) {
				t.Fatalf("everBest %v, direct closed %v after the path went stale; want both", p.everBest.Load(), directClosed(p))
			}
		})
	}
	t.Run("direct closed once", func(t *testing.T) {
		// Each pong after a silence confirms the path again; closing
		// direct a second time would panic.
		at := t0
		for i := range 3 {
			at = at.Add(pathTrust + 1)
			if _, ok := p.current(at); ok {
				t.Fatalf("round %d: path still trusted after silence", i)
			}
			if !confirm(t, p, addrB, 10*time.Millisecond, at) {
				t.Fatalf("round %d: pong after silence did not confirm", i)
			}
			if a, ok := p.current(at); !ok || a != addrB {
				t.Fatalf("round %d: current = %v, %v, want %v", i, a, ok, addrB)
			}
		}
		if !p.everBest.Load() || !directClosed(p) {
			t.Fatal("everBest or direct lost")
		}
	})
}

func TestPathForgetsPendingPings(t *testing.T) {
	tests := []struct {
		age  time.Duration // of the first ping when the second is sent
		kept bool
	}{
		{pingForget - 1, true},
		{pingForget, true},
		{pingForget + 1, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.age), func(t *testing.T) {
			p := testPath()
			first := ping(t, p, addrA, t0)
			now := t0.Add(tt.age)
			second := ping(t, p, addrA, now)
			if _, ok := p.pending[first.seq]; ok != tt.kept {
				t.Fatalf("first ping pending = %v, want %v", ok, tt.kept)
			}
			if _, ok := p.pending[second.seq]; !ok {
				t.Fatal("the ping just sent is not pending")
			}
			// A late pong for a forgotten ping does not confirm anything.
			if got := answer(p, first, counts{}, addrA, now).confirmed; got != tt.kept {
				t.Fatalf("pong for the first ping = %v, want %v", got, tt.kept)
			}
			if _, ok := p.current(now); ok != tt.kept {
				t.Fatalf("current ok = %v, want %v", ok, tt.kept)
			}
		})
	}
}

func TestProberSchedule(t *testing.T) {
	// The table below is written for these values.
	if probeFirst != 250*time.Millisecond || probeInterval != 5*time.Second ||
		pathHeartbeat != 2*time.Second || fullProbeEvery != 10*time.Second {
		t.Fatal("timings changed: update the table")
	}
	const ms = time.Millisecond
	type step struct {
		at        time.Duration // since t0
		wake      bool          // a poke, not the timer
		confirmed bool
		all       bool
		wait      time.Duration
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"nothing answers: backoff doubles to probeInterval", []step{
			{0, false, false, true, 250 * ms},
			{250 * ms, false, false, true, 500 * ms},
			{750 * ms, false, false, true, 1000 * ms},
			{1750 * ms, false, false, true, 2000 * ms},
			{3750 * ms, false, false, true, 4000 * ms},
			{7750 * ms, false, false, true, 5000 * ms},
			{12750 * ms, false, false, true, 5000 * ms},
			{17750 * ms, false, false, true, 5000 * ms},
		}},
		{"confirmed: heartbeats with a full round every fullProbeEvery", []step{
			{0, false, false, true, 250 * ms},
			{250 * ms, false, true, false, 2000 * ms},
			{2250 * ms, false, true, false, 2000 * ms},
			{4250 * ms, false, true, false, 2000 * ms},
			{6250 * ms, false, true, false, 2000 * ms},
			{8250 * ms, false, true, false, 2000 * ms},
			{10250 * ms, false, true, true, 2000 * ms}, // 10.25 s since the round at 0
			{12250 * ms, false, true, false, 2000 * ms},
			{14250 * ms, false, true, false, 2000 * ms},
			{16250 * ms, false, true, false, 2000 * ms},
			{18250 * ms, false, true, false, 2000 * ms},
			{20250*ms - 1, true, true, false, 2000 * ms}, // 1 ns short of fullProbeEvery
			{20250 * ms, true, true, true, 2000 * ms},    // exactly fullProbeEvery
			{22250 * ms, false, true, false, 2000 * ms},
		}},
		{"confirmed from the first call: a full round first", []step{
			{0, false, true, true, 2000 * ms},
			{2000 * ms, false, true, false, 2000 * ms},
		}},
		{"stale path: back to rounds to every target, backoff resumed", []step{
			{0, false, false, true, 250 * ms},
			{250 * ms, false, false, true, 500 * ms},
			{750 * ms, false, true, false, 2000 * ms},
			{2750 * ms, false, true, false, 2000 * ms},
			{4750 * ms, false, false, true, 1000 * ms}, // not 250 ms: the backoff never restarts
			{5750 * ms, false, false, true, 2000 * ms},
			{7750 * ms, false, true, false, 2000 * ms}, // the last full round was 2 s ago
			{9750 * ms, false, true, false, 2000 * ms},
		}},
		{"a wake-up is a round too and advances the backoff", []step{
			{0, false, false, true, 250 * ms},
			{100 * ms, true, false, true, 500 * ms},
			{600 * ms, false, false, true, 1000 * ms},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var pr prober
			for i, s := range tt.steps {
				if i > 0 && !s.wake {
					if prev := tt.steps[i-1]; s.at != prev.at+prev.wait {
						t.Fatalf("bad table: step %d at %v is not when the timer of step %d fires (%v)", i, s.at, i-1, prev.at+prev.wait)
					}
				}
				all, wait := pr.next(t0.Add(s.at), s.confirmed)
				if all != s.all || wait != s.wait {
					t.Fatalf("step %d at %v (confirmed %v): next = %v, %v, want %v, %v", i, s.at, s.confirmed, all, wait, s.all, s.wait)
				}
			}
		})
	}
}

// TestPathProbing runs runPath's decisions (path.current, prober.next,
// targets, sent, pong) against a simulated network: addrA answers in 10 ms
// from the start, addrB only from 3 s on but in 4 ms, and nothing answers
// from 20 s on.
func TestPathProbing(t *testing.T) {
	rtt := map[netip.AddrPort]time.Duration{addrA: 10 * time.Millisecond, addrB: 4 * time.Millisecond}
	answers := func(a netip.AddrPort, at time.Duration) bool {
		return at < 20*time.Second && (a == addrA || at >= 3*time.Second)
	}
	name := map[netip.AddrPort]string{addrA: "A", addrB: "B"}

	p := testPath()
	p.remote = []netip.AddrPort{addrA, addrB}
	var pr prober
	var trace []string
	for at := time.Duration(0); at < 35*time.Second; {
		now := t0.Add(at)
		best, ok := p.current(now)
		all, wait := pr.next(now, ok)
		to := []netip.AddrPort{best}
		if all {
			var done func(int)
			to, done = p.round(now)
			done(len(to))
		}
		type pong struct {
			m    discoMsg
			from netip.AddrPort
			at   time.Time
		}
		var pongs []pong
		var names []string
		for _, a := range to {
			m := ping(t, p, a, now)
			names = append(names, name[a])
			if answers(a, at) {
				pongs = append(pongs, pong{m, a, now.Add(rtt[a])})
			}
		}
		slices.SortFunc(pongs, func(x, y pong) int { return x.at.Compare(y.at) })
		for _, pg := range pongs {
			answer(p, pg.m, counts{}, pg.from, pg.at)
		}
		via := "relay"
		if b, ok := p.current(now.Add(wait)); ok {
			via = name[b]
		}
		trace = append(trace, fmt.Sprintf("%v ping %s wait %v then %s", at, strings.Join(names, ","), wait, via))
		at += wait
	}
	want := []string{
		"0s ping A,B wait 250ms then A", // B does not answer yet
		"250ms ping A wait 2s then A",
		"2.25s ping A wait 2s then A",
		"4.25s ping A wait 2s then A", // B answers now, but only the best is pinged
		"6.25s ping A wait 2s then A",
		"8.25s ping A wait 2s then A",
		"10.25s ping A,B wait 2s then B", // the full round finds the faster B
		"12.25s ping B wait 2s then B",
		"14.25s ping B wait 2s then B",
		"16.25s ping B wait 2s then B",
		"18.25s ping B wait 2s then B",   // the last pong: 18.254 s
		"20.25s ping A,B wait 2s then B", // a full round; silence
		"22.25s ping B wait 2s then B",
		"24.25s ping B wait 2s then relay", // trusted until 18.254 s + pathTrust = 24.754 s
		"26.25s ping A,B wait 500ms then relay",
		"26.75s ping A,B wait 1s then relay",
		"27.75s ping A,B wait 2s then relay",
		"29.75s ping A,B wait 4s then relay",
		"33.75s ping A,B wait 5s then relay",
	}
	if !slices.Equal(trace, want) {
		t.Fatalf("trace:\n%s\nwant:\n%s", strings.Join(trace, "\n"), strings.Join(want, "\n"))
	}
	if !p.everBest.Load() || !directClosed(p) {
		t.Fatal("everBest or direct lost")
	}
}

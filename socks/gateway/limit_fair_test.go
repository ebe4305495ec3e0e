package gateway

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/transport/limit"
)

// fairLimits are the defaults with a rate no test here reaches.
func fairLimits() Limits {
	l := DefaultLimits()
	l.ConnRate, l.ConnBurst = 1e6, 1<<30
	return l
}

func srcIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// grab acquires streams (or connections) for ip until refused, and
// returns how many it got and the refusal.
func grab(t *testing.T, l *Limiter, ip netip.Addr, conn bool) (int, *LimitError) {
	t.Helper()
	for n := 0; ; n++ {
		var err error
		if conn {
			_, err = l.AcquireConn(ip)
		} else {
			_, err = l.Acquire(ip)
		}
		if err != nil {
			le, ok := errors.AsType[*LimitError](err)
			if !ok {
				t.Fatalf("refusal %v is not a *LimitError", err)
			}
			return n, le
		}
	}
}

// TestLimiterFairNearCap: sources each holding all the streams they can
// get — one after another, or all at once — cannot lock a new source out,
// the total never passes MaxTotal, and the sources refused for their share
// get the "total" refusal, reported once per 10 s.
func TestLimiterFairNearCap(t *testing.T) {
	for _, tc := range []struct {
		name    string
		sources int
		atOnce  bool // round robin, one stream each in turn
		conn    bool // HTTP connections instead of streams
	}{
		{"150 one after another", 150, false, false},
		{"157 one after another (enough to fill the cap first come, first served)", 157, false, false},
		{"300 one after another", 300, false, false},
		{"200 all at once", 200, true, false},
		{"1000 all at once", 1000, true, false},
		{"200 connections one after another", 200, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := testLimiter(fairLimits())
			held := make([]int, tc.sources)
			if tc.atOnce {
				for more := true; more; {
					more = false
					for i := range held {
						var err error
						if tc.conn {
							_, err = l.AcquireConn(srcIP(i))
						} else {
							_, err = l.Acquire(srcIP(i))
						}
						if err == nil {
							held[i]++
							more = true
						}
					}
				}
			} else {
				for i := range held {
					held[i], _ = grab(t, l, srcIP(i), tc.conn)
				}
			}
			total := 0
			for _, h := range held {
				total += h
			}
			k := streams
			if tc.conn {
				k = conns
			}
			if total != l.pools[k].held || total > l.limits.MaxTotal {
				t.Fatalf("the sources hold %d (pool says %d), cap %d", total, l.pools[k].held, l.limits.MaxTotal)
			}
			// A heavy source asking for more is refused, for the gateway's
			// capacity, and reported.
			heavy := 0
			for i, h := range held {
				if h > held[heavy] {
					heavy = i
				}
			}
			if n, le := grab(t, l, srcIP(heavy), tc.conn); n != 0 || le.Reason != "total" && le.Reason != "streams" {
				t.Fatalf("the heaviest source (%d held) got %d more, then %q", held[heavy], n, le.Reason)
			}
			// Newcomers still get in, at least shareFloor each.
			before := total
			for j := range 3 {
				n, le := grab(t, l, netip.AddrFrom4([4]byte{192, 0, 2, byte(j)}), tc.conn)
				if n < shareFloor {
					t.Fatalf("newcomer %d got %d (%s), want at least %d, with %d sources holding %d of %d",
						j, n, le.Reason, shareFloor, tc.sources, total, l.limits.MaxTotal)
				}
				total += n
				t.Logf("newcomer %d: %d, then %q", j, n, le.Reason)
			}
			t.Logf("%d sources hold %d of %d (largest %d); the newcomers bring it to %d",
				tc.sources, before, l.limits.MaxTotal, held[heavy], total)
		})
	}
}

// TestLimiterShareRefusalReports: a source refused for its share gets
// LimitError "total" with the usual reporting, once per source per 10 s.
func TestLimiterShareRefusalReports(t *testing.T) {
	l, advance := testLimiter(Limits{ConnRate: 1e6, ConnBurst: 1 << 30, MaxStreams: 64, MaxTotal: 100})
	grab(t, l, srcIP(0), false) // 64: its own cap
	n, le := grab(t, l, srcIP(1), false)
	if le.Reason != "total" || n >= 36 {
		t.Fatalf("second source: %d, then %q; want fewer than the 36 left, then \"total\"", n, le.Reason)
	}
	if !le.Report || le.Suppressed != 0 || le.RetryAfter != time.Second {
		t.Fatalf("first share refusal: %+v, want Report, Suppressed 0, RetryAfter 1s", le)
	}
	if le := refused(t, l, "10.0.0.1", "total"); le.Report {
		t.Fatal("second share refusal within 10 s reported")
	}
	advance(reportEvery)
	if le := refused(t, l, "10.0.0.1", "total"); !le.Report || le.Suppressed != 1 {
		t.Fatalf("after 10 s: %+v, want Report with Suppressed 1", le)
	}
	mustAcquire(t, l, "192.0.2.1") // a newcomer
}

// TestLimiterLockoutCost reports how many sources, each grabbing all the
// streams it can one after another (the cheapest order for an attacker),
// it takes to lock a newcomer out with the default limits, and checks
// that 4999 sources taking streams in turn do not.
func TestLimiterLockoutCost(t *testing.T) {
	l, _ := testLimiter(fairLimits())
	n := 0
	for ; ; n++ {
		if _, err := l.Acquire(srcIP(n)); err != nil {
			break
		}
		grab(t, l, srcIP(n), false)
	}
	t.Logf("%d sources, holding %d of %d, lock newcomers out (first come, first served: %d)",
		n, l.pools[streams].held, l.limits.MaxTotal, (l.limits.MaxTotal+l.limits.MaxStreams-1)/l.limits.MaxStreams)
	if n < 450 {
		t.Fatalf("%d sources lock newcomers out, want at least 450", n)
	}

	// All at once, round robin: each source ends with about as many as
	// the others, and 4999 of them leave room for a newcomer.
	l, _ = testLimiter(fairLimits())
	for more := true; more; {
		more = false
		for i := range 4999 {
			if _, err := l.Acquire(srcIP(i)); err == nil {
				more = true
			}
		}
	}
	if _, err := l.Acquire(netip.MustParseAddr("192.0.2.1")); err != nil {
		t.Fatalf("4999 sources taking streams in turn (holding %d): newcomer refused: %v", l.pools[streams].held, err)
	}
}

// TestLimiterSourcesBounded: 100k distinct sources, each opening a stream
// and closing it, leave at most trackedSources tracked; past the cap,
// sources whose entry cannot be forgotten share one budget, and sources
// tracked before keep theirs.
func TestLimiterSourcesBounded(t *testing.T) {
	const n = 100000
	t.Run("clock still", func(t *testing.T) {
		// No bucket refills: nothing can be forgotten.
		lim := fairLimits()
		lim.ConnRate, lim.ConnBurst = 1, 5
		l, _ := testLimiter(lim)
		for i := range n {
			r, err := l.Acquire(srcIP(i))
			if err != nil {
				// Sources past the cap share one bucket of 5.
				if i < trackedSources+lim.ConnBurst {
					t.Fatalf("source %d refused: %v", i, err)
				}
				continue
			}
			r()
		}
		if got := l.Sources(); got != trackedSources {
			t.Fatalf("Sources = %d after %d distinct sources, want the cap %d", got, n, trackedSources)
		}
		// The first source kept its own budget (4 tokens left of 5).
		for range 4 {
			mustAcquire(t, l, srcIP(0).String())()
		}
		refused(t, l, srcIP(0).String(), "rate")
		// A new source shares the drained budget of those past the cap.
		refused(t, l, "192.0.2.1", "rate")
	})
	t.Run("clock moving", func(t *testing.T) {
		l, advance := testLimiter(fairLimits())
		for i := range n {
			advance(time.Millisecond)
			r, err := l.Acquire(srcIP(i))
			if err != nil {
				t.Fatalf("source %d: %v", i, err)
			}
			r()
			if l.table.len() > trackedSources {
				t.Fatalf("%d tracked after %d sources", l.table.len(), i+1)
			}
		}
		t.Logf("%d sources over %s: %d tracked", n, time.Duration(n)*time.Millisecond, l.table.len())
		// Idle long enough, they are forgotten by later calls, a few per
		// call and never all in one.
		advance(idleEvict)
		before := l.table.len()
		mustAcquire(t, l, "192.0.2.1")()
		if d := before - l.table.len(); d > expirePerCall {
			t.Fatalf("one Acquire forgot %d sources, want at most %d", d, expirePerCall)
		}
		for range trackedSources / expirePerCall {
			mustAcquire(t, l, "192.0.2.1")()
		}
		if got := l.table.len(); got > 1 {
			t.Fatalf("%d sources still tracked after they expired", got)
		}
	})
}

// TestLimiterIdleListOrder: the idle list holds exactly the sources
// holding nothing, most recently used first.
func TestLimiterIdleListOrder(t *testing.T) {
	l, advance := testLimiter(fairLimits())
	var held []func()
	for i := range 10 {
		advance(time.Second)
		r := mustAcquire(t, l, srcIP(i).String())
		if i%2 == 0 {
			r()
		} else {
			held = append(held, r)
		}
	}
	check := func(want string) {
		t.Helper()
		got := ""
		for s := l.table.idle.next; s != &l.table.idle; s = s.next {
			if s.next.prev != s {
				t.Fatal("idle list links broken")
			}
			got += fmt.Sprint(s.key.Addr().As4()[3], " ")
		}
		if got != want {
			t.Fatalf("idle list %q, want %q", got, want)
		}
	}
	check("8 6 4 2 0 ")
	held[0]() // source 1
	check("1 8 6 4 2 0 ")
	advance(time.Second)
	mustAcquire(t, l, srcIP(4).String()) // held: off the list
	check("1 8 6 2 0 ")
}

// TestLimiterFullTableReuse: with the table full, a new source takes the
// entry of the least recently used idle source once forgetting that one
// forgives nothing, and starts afresh; until then it shares the budget of
// the sources past the cap.
func TestLimiterFullTableReuse(t *testing.T) {
	l, advance := testLimiter(Limits{ConnRate: 1, ConnBurst: 1, MaxStreams: 10, MaxTotal: 100})
	l.table.max = 2
	mustAcquire(t, l, "192.0.2.1")()
	refused(t, l, "192.0.2.1", "rate") // reported: .1 may not be forgotten for 10 s
	mustAcquire(t, l, "192.0.2.2")()
	// Both buckets empty: .3 shares the budget of the sources past the cap.
	mustAcquire(t, l, "192.0.2.3")()
	refused(t, l, "192.0.2.4", "rate")
	if n := l.table.len(); n != 2 {
		t.Fatalf("%d tracked, want 2", n)
	}
	advance(time.Second)             // buckets full again; .1's report is 1 s old
	mustAcquire(t, l, "192.0.2.5")() // takes .2's entry, not .1's
	if _, ok := l.table.m[limit.SourcePrefix(netip.MustParseAddr("192.0.2.2"))]; ok {
		t.Fatal(".2 still tracked")
	}
	if le := refused(t, l, "192.0.2.5", "rate"); !le.Report || le.Suppressed != 0 {
		t.Fatalf(".5 in .2's old entry: %+v, want a fresh report", le)
	}
	mustAcquire(t, l, "192.0.2.1")()
	if le := refused(t, l, "192.0.2.1", "rate"); le.Report {
		t.Fatal(".1 forgotten while its refusal report was 1 s old")
	}
}

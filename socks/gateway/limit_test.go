package gateway

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// testLimiter returns a Limiter on a clock the test moves with advance.
func testLimiter(limits Limits) (l *Limiter, advance func(time.Duration)) {
	l = NewLimiter(limits)
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	return l, func(d time.Duration) { now = now.Add(d) }
}

func mustAcquire(t *testing.T, l *Limiter, ip string) func() {
	t.Helper()
	release, err := l.Acquire(netip.MustParseAddr(ip))
	if err != nil {
		t.Fatalf("Acquire(%s): %v", ip, err)
	}
	return release
}

func refused(t *testing.T, l *Limiter, ip, reason string) *LimitError {
	t.Helper()
	release, err := l.Acquire(netip.MustParseAddr(ip))
	if err == nil {
		release()
		t.Fatalf("Acquire(%s) succeeded, want a refusal (%s)", ip, reason)
	}
	le, ok := errors.AsType[*LimitError](err)
	if !ok || !errors.Is(err, ErrRateLimited) || le.Reason != reason {
		t.Fatalf("Acquire(%s) = %v, want a *LimitError %q wrapping ErrRateLimited", ip, err, reason)
	}
	return le
}

func TestLimiterBurstThenLimited(t *testing.T) {
	l, advance := testLimiter(Limits{ConnRate: 2, ConnBurst: 5, MaxStreams: 100, MaxTotal: 1000})
	for range 5 {
		mustAcquire(t, l, "192.0.2.1")() // released at once: only the rate counts
	}
	le := refused(t, l, "192.0.2.1", "rate")
	if !le.Report || le.Suppressed != 0 || le.RetryAfter != time.Second {
		t.Fatalf("first refusal: %+v, want Report, Suppressed 0, RetryAfter 1s", le)
	}
	for i := range 3 {
		if le := refused(t, l, "192.0.2.1", "rate"); le.Report {
			t.Fatalf("refusal %d reported again within 10 s", i+2)
		}
	}
	advance(500 * time.Millisecond) // 2/s: one token back
	mustAcquire(t, l, "192.0.2.1")()
	refused(t, l, "192.0.2.1", "rate")
	advance(10 * time.Second) // bucket full again, and time to report
	for range 5 {
		mustAcquire(t, l, "192.0.2.1")()
	}
	if le := refused(t, l, "192.0.2.1", "rate"); !le.Report || le.Suppressed != 4 {
		t.Fatalf("refusal after 10 s: %+v, want Report with Suppressed 4", le)
	}

	// A slow rate asks for a longer wait, rounded up to whole seconds.
	slow, _ := testLimiter(Limits{ConnRate: 0.4, ConnBurst: 1})
	mustAcquire(t, slow, "192.0.2.9")()
	if le := refused(t, slow, "192.0.2.9", "rate"); le.RetryAfter != 3*time.Second {
		t.Fatalf("RetryAfter at 0.4/s = %v, want 3s", le.RetryAfter)
	}
}

func TestLimiterConcurrency(t *testing.T) {
	l, _ := testLimiter(Limits{ConnRate: 1000, ConnBurst: 1000, MaxStreams: 3, MaxTotal: 5})
	var held []func()
	for range 3 {
		held = append(held, mustAcquire(t, l, "192.0.2.1"))
	}
	refused(t, l, "192.0.2.1", "streams")
	held[0]()
	held[0]() // a second release gives nothing more back
	held = append(held, mustAcquire(t, l, "192.0.2.1"))
	refused(t, l, "192.0.2.1", "streams")

	// The overall cap: 3 open from .1, 2 more from others, then nobody.
	held = append(held, mustAcquire(t, l, "192.0.2.2"), mustAcquire(t, l, "192.0.2.3"))
	refused(t, l, "192.0.2.4", "total")
	held[len(held)-1]()
	mustAcquire(t, l, "192.0.2.4")

	// Connections are counted apart from streams.
	c, err := l.AcquireConn(netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		t.Fatalf("AcquireConn while streams are at their cap: %v", err)
	}
	c()
}

func TestLimiterConnCap(t *testing.T) {
	l, _ := testLimiter(Limits{MaxStreams: 2, MaxTotal: 3})
	ip := netip.MustParseAddr("192.0.2.1")
	r1, _ := l.AcquireConn(ip)
	r2, _ := l.AcquireConn(ip)
	if _, err := l.AcquireConn(ip); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("third connection from one source: %v, want ErrRateLimited", err)
	}
	r3, err := l.AcquireConn(netip.MustParseAddr("192.0.2.2"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AcquireConn(netip.MustParseAddr("192.0.2.3")); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("fourth connection overall: %v, want ErrRateLimited", err)
	}
	r1()
	r2()
	r3()
	if r, err := l.AcquireConn(ip); err != nil {
		t.Fatalf("after release: %v", err)
	} else {
		r()
	}
}

func TestLimiterIsolation(t *testing.T) {
	l, _ := testLimiter(Limits{ConnRate: 1, ConnBurst: 2, MaxStreams: 10, MaxTotal: 100})
	for range 2 {
		mustAcquire(t, l, "192.0.2.1")()
	}
	refused(t, l, "192.0.2.1", "rate")
	refused(t, l, "::ffff:192.0.2.1", "rate") // the same IPv4 source, mapped
	mustAcquire(t, l, "192.0.2.2")()          // another source is unaffected

	// IPv6: one budget per /64.
	for range 2 {
		mustAcquire(t, l, "2001:db8:1:2::1")()
	}
	refused(t, l, "2001:db8:1:2:ffff::99", "rate")
	mustAcquire(t, l, "2001:db8:1:3::1")()
}

func TestLimiterEviction(t *testing.T) {
	l, advance := testLimiter(Limits{ConnRate: 10, ConnBurst: 10, MaxStreams: 10, MaxTotal: 100000})
	for i := range 1000 {
		mustAcquire(t, l, netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}).String())()
	}
	held := mustAcquire(t, l, "192.0.2.1") // busy: kept however long
	// A drained bucket at a slow rate is kept until it has refilled, so
	// eviction forgives nothing.
	slow, sAdvance := testLimiter(Limits{ConnRate: 0.001, ConnBurst: 1})
	mustAcquire(t, slow, "192.0.2.7")()
	if n := l.Sources(); n != 1001 {
		t.Fatalf("Sources = %d, want 1001", n)
	}
	advance(idleEvict + time.Minute)
	mustAcquire(t, l, "192.0.2.2")()
	if n := l.Sources(); n != 2 {
		t.Fatalf("after the idle period Sources = %d, want 2 (the busy one and the new one)", n)
	}
	held()

	sAdvance(idleEvict + time.Minute)
	refused(t, slow, "192.0.2.7", "rate")
	if n := slow.Sources(); n != 1 {
		t.Fatalf("slow limiter: Sources = %d, want 1", n)
	}
}

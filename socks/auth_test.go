package socks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/tunnel-dev/tunnel/cmd/roles/procs"
)

// newTestAuth returns an Authenticator for alice:right (cost 4) and a log
// sink of its lines.
func newTestAuth(t testing.TB, limits AuthLimits) (*Authenticator, logSink) {
	t.Helper()
	pw, err := LoadPasswords(writePasswords(t, "alice:"+testHash(t, "right")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	sink, log := newLogSink()
	return NewAuthenticator(pw, limits, log), sink
}

var (
	srcA = &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1000}
	srcB = &net.TCPAddr{IP: net.ParseIP("192.0.2.2"), Port: 1000}
)

// The right password passes and is then answered from the cache; wrong
// ones and unknown users fail, each at the cost of one check (an unknown
// user's too, so that timing tells no names).
func TestAuthenticatorCheck(t *testing.T) {
	a, _ := newTestAuth(t, AuthLimits{})
	ctx := context.Background()
	if err := a.Check(ctx, srcA, "alice", "right"); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if err := a.Check(ctx, srcA, "alice", "right"); err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Checks(); n != 1 {
		t.Fatalf("%d bcrypt checks for 11 logins, want 1 (the rest cached)", n)
	}
	for _, c := range [][2]string{{"alice", "wrong"}, {"bob", "right"}, {"Alice", "right"}, {"alice", "right "}} {
		if err := a.Check(ctx, srcA, c[0], c[1]); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%q/%q: %v, want ErrBadCredentials", c[0], c[1], err)
		}
	}
	if n := a.Checks(); n != 5 {
		t.Fatalf("%d bcrypt checks, want 5: each failure, unknown user included, costs one", n)
	}
	// What no entry can match costs nothing.
	for _, c := range [][2]string{{"alice", ""}, {"alice", string(make([]byte, 73))}, {"a:b", "right"}, {"", "right"}} {
		if err := a.Check(ctx, srcA, c[0], c[1]); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("%q/%q: %v, want ErrBadCredentials", c[0], c[1], err)
		}
	}
	if n := a.Checks(); n != 5 {
		t.Fatalf("%d bcrypt checks, want still 5", n)
	}
}

// A source gets Burst uncached checks, then Rate a second; past that it is
// refused without a check, while a password already cached still gets in
// from the same address and other sources are unaffected. Refusals are
// logged once per source per 10 s.
func TestAuthenticatorRateLimit(t *testing.T) {
	a, sink := newTestAuth(t, AuthLimits{Rate: 0.001, Burst: 3})
	ctx := context.Background()
	if err := a.Check(ctx, srcA, "alice", "right"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := a.Check(ctx, srcA, "alice", fmt.Sprint("guess", i)); !errors.Is(err, ErrBadCredentials) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	for i := range 20 {
		if err := a.Check(ctx, srcA, "alice", fmt.Sprint("more", i)); !errors.Is(err, ErrTooManyAttempts) {
			t.Fatalf("guess %d past the burst: %v, want ErrTooManyAttempts", i, err)
		}
	}
	if n := a.Checks(); n != 3 {
		t.Fatalf("%d bcrypt checks, want 3 (the burst): refusals past it cost none", n)
	}
	if err := a.Check(ctx, srcA, "alice", "right"); err != nil {
		t.Fatalf("the cached password from the limited source: %v", err)
	}
	if err := a.Check(ctx, srcB, "alice", "nope"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("another source: %v", err)
	}
	lines := 0
	for len(sink) > 0 {
		if m := <-sink; m["message"] == "socks authentication refused" {
			lines++
			if m["client"] == srcA.String() && m["user"] != "alice" {
				t.Errorf("refusal line without the user: %v", m)
			}
		}
	}
	if lines != 2 {
		t.Fatalf("%d refusal lines for 22 refusals from one source and 1 from another, want 2", lines)
	}
}

// At most Concurrent checks run at once; the connections that waited find
// the password their neighbour checked in the cache. A check that cannot
// get a slot before its context ends is ErrAuthBusy.
func TestAuthenticatorConcurrency(t *testing.T) {
	a, _ := newTestAuth(t, AuthLimits{Concurrent: 1, Burst: 100})
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() { errs <- a.Check(context.Background(), srcA, "alice", "right") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := a.Checks(); n != 1 {
		t.Fatalf("%d checks for 20 simultaneous logins with one password, want 1", n)
	}

	a.slots <- struct{}{} // the one slot, busy
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := a.Check(ctx, srcB, "alice", "other"); !errors.Is(err, ErrAuthBusy) {
		t.Fatalf("no slot: %v, want ErrAuthBusy", err)
	}
	<-a.slots
}

// The cache holds at most CacheSize pairs, each for CacheTTL.
func TestAuthenticatorCacheBounds(t *testing.T) {
	a, _ := newTestAuth(t, AuthLimits{CacheSize: 2, CacheTTL: time.Hour})
	for i := range 5 {
		a.remember(a.cacheKeyOf("alice", fmt.Sprint(i)))
	}
	if len(a.cache) != 2 {
		t.Fatalf("%d cached, want 2", len(a.cache))
	}
	if !a.cached(a.cacheKeyOf("alice", "4")) {
		t.Fatal("the newest pair is not cached")
	}
	a, _ = newTestAuth(t, AuthLimits{CacheTTL: time.Millisecond})
	if err := a.Check(context.Background(), srcA, "alice", "right"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if a.cached(a.cacheKeyOf("alice", "right")) {
		t.Fatal("cached past its TTL")
	}
	if len(a.cache) != 0 {
		t.Fatal("an expired entry is still held")
	}
}

// BenchmarkAuthFailedCheck is what one failed password costs the machine
// at the default cost (10) that `tunnel socksd passwd` writes, as CPU time
// of the process (cpu-ms/op: wall time varies with what else runs).
func BenchmarkAuthFailedCheck(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	pw, err := LoadPasswords(writePasswords(b, "alice:"+string(h)+"\n"))
	if err != nil {
		b.Fatal(err)
	}
	a := NewAuthenticator(pw, AuthLimits{Rate: 1e9, Burst: 1 << 30}, zerolog.Nop())
	i := 0
	cpu0 := procs.CPUTime()
	for b.Loop() {
		i++
		if err := a.Check(context.Background(), srcA, "alice", fmt.Sprint("wrong", i)); !errors.Is(err, ErrBadCredentials) {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(procs.CPUTime()-cpu0)/float64(time.Millisecond)/float64(i), "cpu-ms/op")
}

// An entry `htpasswd -B` (Apache 2.4) made, for a password with a space
// and a non-ASCII letter, checks as ours do.
func TestAuthenticatorHtpasswdEntry(t *testing.T) {
	pw, err := LoadPasswords(writePasswords(t, "carol:$2y$05$Q.DUimGC0BPsv/gxtzM0G.XzuoliQec4hLyslf0FqeG3G9eCLFyJq\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(pw, AuthLimits{}, zerolog.Nop())
	if err := a.Check(context.Background(), srcA, "carol", "pässword 1"); err != nil {
		t.Fatal(err)
	}
	if err := a.Check(context.Background(), srcA, "carol", "password 1"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("a wrong password: %v", err)
	}
}

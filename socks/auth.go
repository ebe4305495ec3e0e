package socks

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"github.com/tunnel-dev/tunnel/transport/limit"
)

// Authenticator checks usernames and passwords against a password file
// (passwd.go) for the SOCKS server (RFC 1929) and the HTTP front (Basic),
// at a cost to the machine that whoever sends them cannot raise at will.
// A bcrypt check is tens of milliseconds of a core (60 ms at cost 10), so:
//
//   - Successful checks are cached: a keyed hash (HMAC-SHA256 under a key
//     random per process) of user and password → when it expires. A client
//     that opens many connections with the right password pays for one
//     check per CacheTTL; the cache holds no password, and is useless to
//     anyone without the process's key. Only successes enter it, so
//     strangers cannot fill it; it is bounded by CacheSize anyway.
//   - A check the cache cannot answer takes a token of its source's
//     bucket first (Rate per second, bursts of Burst): a source that has
//     spent its tokens is refused without any bcrypt, so one source forces
//     at most Rate checks a second. A cached password still gets in from
//     a source that is out of tokens: a stranger guessing from the same
//     address (loopback, a NAT) does not lock out a user already in.
//   - At most Concurrent checks run at a time, whatever the number of
//     sources: the others wait, until their connection's handshake
//     deadline at most, and then find a password checked meanwhile in the
//     cache. Strangers from many sources can slow first logins, never
//     take more than Concurrent cores.
//   - An unknown user costs the same check as a known one (against a
//     hash of the file's first entry's cost), so timing tells no user
//     names.
//
// Refusals are logged at most once per source per 10 s, with the number
// not logged.
type Authenticator struct {
	pw     *Passwords
	limits AuthLimits
	log    zerolog.Logger

	slots  chan struct{}
	tries  *limit.Rate[netip.Prefix]
	report *limit.Reporter
	dummy  func() []byte

	cacheKey [32]byte
	mu       sync.Mutex
	cache    map[[32]byte]time.Time

	checks  atomic.Int64  // bcrypt checks made, for tests and measurements
	limited atomic.Uint64 // attempts refused over the rate, for metrics
}

// AuthLimits are the Authenticator's budgets; a zero field takes its
// default.
type AuthLimits struct {
	// Concurrent bcrypt checks; default half the CPUs, at least 1, so
	// that password guessing leaves the others to the tunnels.
	Concurrent int
	// Rate of checks the cache cannot answer, per source per second, on
	// average (default 1), with bursts of Burst (default 10): a person
	// mistyping a few times never notices.
	Rate  float64
	Burst int
	// CacheTTL is how long a successful check is remembered (default 10
	// minutes), for at most CacheSize user/password pairs (default 1024).
	CacheTTL  time.Duration
	CacheSize int
}

func (l AuthLimits) withDefaults() AuthLimits {
	if l.Concurrent <= 0 {
		l.Concurrent = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if l.Rate <= 0 {
		l.Rate = 1
	}
	if l.Burst <= 0 {
		l.Burst = 10
	}
	if l.CacheTTL <= 0 {
		l.CacheTTL = 10 * time.Minute
	}
	if l.CacheSize <= 0 {
		l.CacheSize = 1024
	}
	return l
}

// Refusals of Check. Each is what the client may be told.
var (
	ErrBadCredentials  = errors.New("wrong username or password")
	ErrTooManyAttempts = errors.New("too many password attempts from this address; try again later")
	ErrAuthBusy        = errors.New("too many password checks at once; try again")
	// errNoCredentials: a client that offers none where they are needed.
	errNoCredentials = errors.New("no username and password offered")
)

// NewAuthenticator checks passwords against pw within limits.
func NewAuthenticator(pw *Passwords, limits AuthLimits, log zerolog.Logger) *Authenticator {
	a := &Authenticator{pw: pw, limits: limits.withDefaults(), log: log, cache: make(map[[32]byte]time.Time)}
	a.slots = make(chan struct{}, a.limits.Concurrent)
	a.tries = limit.NewRate[netip.Prefix](a.limits.Rate, a.limits.Burst, refusalReportKeys)
	a.report = limit.NewReporter(refusalReportEvery, 1, refusalReportKeys)
	if _, err := rand.Read(a.cacheKey[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported systems
	}
	a.dummy = sync.OnceValue(func() []byte {
		var pw [16]byte
		rand.Read(pw[:])
		h, err := bcrypt.GenerateFromPassword(pw[:], max(a.pw.cost, bcrypt.MinCost))
		if err != nil {
			panic(err)
		}
		return h
	})
	return a
}

// Check reports whether user and password are in the file, as asked by a
// client at src. It returns nil, ErrBadCredentials, ErrTooManyAttempts or
// ErrAuthBusy (ctx ended while waiting for a check slot); it logs
// refusals.
func (a *Authenticator) Check(ctx context.Context, src net.Addr, user, password string) error {
	key := a.cacheKeyOf(user, password)
	if a.cached(key) {
		return nil
	}
	if CheckUsername(user) != nil || CheckPassword(password) != nil {
		// No entry can match: no need to spend a check.
		return a.refuse(src, user, ErrBadCredentials)
	}
	if !a.tries.Allow(limit.SourceOf(src), time.Now()) {
		a.limited.Add(1)
		return a.refuse(src, user, ErrTooManyAttempts)
	}
	select {
	case a.slots <- struct{}{}:
	case <-ctx.Done():
		return a.refuse(src, user, ErrAuthBusy)
	}
	defer func() { <-a.slots }()
	if a.cached(key) {
		// Checked by another connection while this one waited.
		return nil
	}
	hash, known := a.pw.hashes[user]
	if !known {
		hash = a.dummy()
	}
	a.checks.Add(1)
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil || !known {
		return a.refuse(src, user, ErrBadCredentials)
	}
	a.remember(key)
	return nil
}

// cacheKeyOf is the keyed hash of a user and password. A username has no
// NUL, so the two cannot be confused.
func (a *Authenticator) cacheKeyOf(user, password string) [32]byte {
	m := hmac.New(sha256.New, a.cacheKey[:])
	m.Write([]byte(user))
	m.Write([]byte{0})
	m.Write([]byte(password))
	var k [32]byte
	m.Sum(k[:0])
	return k
}

func (a *Authenticator) cached(k [32]byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.cache[k]
	if ok && time.Now().After(exp) {
		delete(a.cache, k)
		return false
	}
	return ok
}

// remember caches a success. When the cache is full it drops the expired
// entries, then any one: a dropped pair costs one more check, no more.
func (a *Authenticator) remember(k [32]byte) {
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= a.limits.CacheSize {
		for old, exp := range a.cache {
			if now.After(exp) {
				delete(a.cache, old)
			}
		}
		for old := range a.cache {
			if len(a.cache) < a.limits.CacheSize {
				break
			}
			delete(a.cache, old)
		}
	}
	a.cache[k] = now.Add(a.limits.CacheTTL)
}

// refuse logs a refusal (once per source per interval) and returns err.
func (a *Authenticator) refuse(src net.Addr, user string, err error) error {
	if log, n := a.report.Note(limit.SourceOf(src).String(), time.Now()); log {
		ev := a.log.Info().Str("client", addrString(src))
		if CheckUsername(user) == nil {
			// (A name with control characters is not worth a log line's.)
			ev = ev.Str("user", trunc(user, 64))
		}
		ev.Int("suppressed", n).Err(err).Msg("socks authentication refused")
	}
	return err
}

// Limited returns how many attempts were refused unchecked, over their
// source's rate.
func (a *Authenticator) Limited() uint64 { return a.limited.Load() }

// Checks returns how many bcrypt checks have been made.
func (a *Authenticator) Checks() int64 { return a.checks.Load() }

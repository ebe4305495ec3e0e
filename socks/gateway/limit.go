package gateway

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/tunnel-dev/tunnel/transport/limit"
)

// ErrRateLimited is wrapped by every refusal of the Limiter (as a
// *LimitError).
var ErrRateLimited = errors.New("rate limited")

// Limits are the Limiter's budgets. A zero field takes its default from
// DefaultLimits.
type Limits struct {
	// ConnRate is the number of new streams (SOCKS connections, HTTP
	// requests) a source may open per second, on average...
	ConnRate float64
	// ...and ConnBurst how many it may open at once after a quiet spell.
	ConnBurst int
	// MaxStreams caps the streams a source has open at a time; it also caps
	// the TCP connections a source holds open to the HTTP(S) listeners.
	MaxStreams int
	// MaxTotal caps the streams open at a time over all sources (and, as a
	// separate count, the HTTP(S) TCP connections). Its last fifth is
	// shared fairly: see Limiter.
	MaxTotal int
}

// DefaultLimits are the gateway's defaults: 20 new streams per second per
// source with bursts of 40, 64 open at a time per source, 10000 overall.
func DefaultLimits() Limits {
	return Limits{ConnRate: 20, ConnBurst: 40, MaxStreams: 64, MaxTotal: 10000}
}

const (
	// reportEvery is how often a refused source gets a log line.
	reportEvery = 10 * time.Second
	// capRetry is the Retry-After a client over an open-stream cap is
	// given: a stream may end any time.
	capRetry = time.Second
	// reserveDiv sets the reserve, the last part of MaxTotal (a fifth)
	// where sources holding more than their share are refused first.
	reserveDiv = 5
	// shareFloor is what a source may hold whatever its share: near the
	// cap, any source holding fewer is admitted while there is room.
	shareFloor = 2
)

// LimitError is the error of a refused Acquire. It wraps ErrRateLimited.
type LimitError struct {
	// Reason says which budget ran out: "rate" (new streams per second),
	// "streams" (this source's open streams or connections) or "total"
	// (the gateway's: at its cap, or near it with this source holding
	// more than its share).
	Reason string
	// RetryAfter is when trying again may succeed (at least one second).
	RetryAfter time.Duration
	// Report is true for the first refusal of a source in ten seconds:
	// callers log only those, so a flood yields a line per source per 10 s.
	Report bool
	// Suppressed counts the refusals of this source that were not reported
	// since the last one that was.
	Suppressed int
}

func (e *LimitError) Error() string {
	switch e.Reason {
	case "rate":
		return fmt.Sprintf("%v: too many new connections from this address", ErrRateLimited)
	case "streams":
		return fmt.Sprintf("%v: too many open connections from this address", ErrRateLimited)
	default:
		return fmt.Sprintf("%v: gateway at capacity", ErrRateLimited)
	}
}

func (e *LimitError) Unwrap() error { return ErrRateLimited }

// Limiter enforces Limits per source address. A source is an IPv4 address,
// or an IPv6 /64 (one subscriber's usual allocation, so that a host cannot
// escape its budget by hopping addresses). Callers pass the address of the
// TCP peer, never anything a client wrote (X-Forwarded-For). It is safe
// for concurrent use, and every call does a bounded amount of work.
//
// Fair near the cap: MaxTotal is a hard cap, and its last fifth (the
// reserve) is not first come, first served. Once fewer than a fifth of the
// slots are left, a source may take another only while it holds less than
// its share: the slots outside the reserve divided among the sources
// holding any, scaled by the square of the fraction of the reserve left;
// but a source holding fewer than shareFloor (2) is admitted while there
// is any room. So sources holding more than their share are refused
// first, the share shrinks as the reserve is used, and the last slots go
// to sources holding almost nothing: a newcomer still gets in while
// hundreds of sources sit on all they can hold. With the defaults,
// sources each taking all they can one after another (an attacker's best
// order) lock newcomers out only at 501 sources, all at once only at 5000
// (TestLimiterLockoutCost; first come, first served, 157 did). Streams
// and HTTP(S) connections are two pools, each with its own cap and share.
//
// Bounded memory: the state of at most max(65536, 2*MaxTotal) sources is
// kept (sourceTable). A source holding nothing is forgotten once it has
// been idle for idleEvict and forgetting it forgives nothing (its token
// bucket is full, its refusal report window over), lazily: each call
// looks at a few of the least recently used, never at the whole table. A
// new source that finds the table full takes the entry of one of the
// least recently used idle sources that can be forgotten; if none can,
// it shares one budget with every other source past the cap.
type Limiter struct {
	limits  Limits
	now     func() time.Time // a test's clock
	reserve int              // the last slots of MaxTotal, given by share
	floor   int              // a source holding fewer is within its share

	mu    sync.Mutex
	pools [numKinds]pool
	table sourceTable

	// Refused counts refusals by LimitError.Reason, for metrics: [0]
	// "rate", [1] "streams", [2] "total".
	Refused [3]atomic.Uint64
}

// LimitReasons are the LimitError.Reason values, in Limiter.Refused's order.
var LimitReasons = [3]string{"rate", "streams", "total"}

// kind is what a Limiter counts: open streams, or open HTTP(S)
// connections.
type kind int

const (
	streams kind = iota
	conns
	numKinds
)

// pool is the count of one kind over all sources.
type pool struct {
	held   int // open, all sources
	active int // sources holding at least one
}

// NewLimiter returns a Limiter enforcing limits.
func NewLimiter(limits Limits) *Limiter {
	def := DefaultLimits()
	limits.ConnRate = limit.OrDefault(limits.ConnRate, def.ConnRate) // NaN is not above zero either
	limits.ConnBurst = limit.OrDefault(limits.ConnBurst, def.ConnBurst)
	limits.MaxStreams = limit.OrDefault(limits.MaxStreams, def.MaxStreams)
	limits.MaxTotal = limit.OrDefault(limits.MaxTotal, def.MaxTotal)
	l := &Limiter{limits: limits, now: time.Now,
		reserve: max(1, limits.MaxTotal/reserveDiv), floor: min(shareFloor, limits.MaxStreams)}
	l.table.init(max(trackedSources, 2*limits.MaxTotal), l.newBucket)
	return l
}

// Limits returns the budgets in force.
func (l *Limiter) Limits() Limits { return l.limits }

// Acquire admits one new stream from ip: it takes a token from the
// source's bucket and a slot of its concurrent streams and of the overall
// ones. release gives the slots back; it may be called more than once. A
// refusal is a *LimitError and takes nothing.
func (l *Limiter) Acquire(ip netip.Addr) (release func(), err error) {
	return l.acquire(ip, streams)
}

// AcquireConn admits one TCP connection from ip to an HTTP(S) listener:
// it counts against MaxStreams per source and MaxTotal overall (separately
// from streams), but takes no token, since each request on it does.
func (l *Limiter) AcquireConn(ip netip.Addr) (release func(), err error) {
	return l.acquire(ip, conns)
}

func (l *Limiter) acquire(ip netip.Addr, k kind) (release func(), err error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.table.expire(now, expirePerCall)
	s := l.table.get(limit.SourcePrefix(ip), now)
	defer l.table.touch(s, now)
	p := &l.pools[k]
	switch {
	case p.held >= l.limits.MaxTotal:
		return nil, l.refuse(s, now, "total", capRetry)
	case s.held[k] >= l.limits.MaxStreams:
		return nil, l.refuse(s, now, "streams", capRetry)
	case !l.withinShare(s.held[k], p):
		return nil, l.refuse(s, now, "total", capRetry)
	case k == streams && !s.bucket.AllowN(now, 1):
		// The time until the bucket holds a whole token again.
		wait := time.Duration((1 - s.bucket.TokensAt(now)) / l.limits.ConnRate * float64(time.Second))
		return nil, l.refuse(s, now, "rate", wait)
	}
	if s.held[k]++; s.held[k] == 1 {
		p.active++
	}
	p.held++
	r := &releaser{l: l, s: s, k: k}
	return r.release, nil
}

// withinShare reports whether a source holding held of pool p may take
// one more (see Limiter: fair near the cap). l.mu is held.
func (l *Limiter) withinShare(held int, p *pool) bool {
	left := l.limits.MaxTotal - p.held
	if left > l.reserve || held < l.floor {
		return true
	}
	// held >= floor >= 1: this source is one of p.active.
	share := float64(l.limits.MaxTotal-l.reserve) / float64(p.active)
	f := float64(left) / float64(l.reserve)
	return float64(held) < share*f*f
}

// releaser gives back one slot, once.
type releaser struct {
	l    *Limiter
	s    *source
	k    kind
	done atomic.Bool
}

func (r *releaser) release() {
	if r.done.Swap(true) {
		return
	}
	l, s, p := r.l, r.s, &r.l.pools[r.k]
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.held[r.k]--; s.held[r.k] == 0 {
		p.active--
	}
	p.held--
	l.table.touch(s, now)
}

// Sources returns how many sources the Limiter holds state for, after
// forgetting every source due to be (the calls that admit streams forget
// a few at a time).
func (l *Limiter) Sources() int {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.table.expire(now, math.MaxInt)
	return l.table.len()
}

func (l *Limiter) newBucket() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(l.limits.ConnRate), l.limits.ConnBurst)
}

func (l *Limiter) refuse(s *source, now time.Time, reason string, wait time.Duration) *LimitError {
	for i, r := range LimitReasons {
		if r == reason {
			l.Refused[i].Add(1)
		}
	}
	secs := max(1, math.Ceil(wait.Seconds()))
	e := &LimitError{Reason: reason, RetryAfter: time.Duration(secs) * time.Second}
	s.dropped++
	if s.reported.IsZero() || now.Sub(s.reported) >= reportEvery {
		e.Report, e.Suppressed = true, s.dropped-1
		s.reported, s.dropped = now, 0
	}
	return e
}

// limitListener admits each accepted HTTP(S) connection with AcquireConn
// and closes those over the limit at once.
type limitListener struct {
	net.Listener
	lim    *Limiter
	onDeny func(ip netip.Addr, err *LimitError)
}

func (ln *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := limit.AddrIP(c.RemoteAddr())
		release, err := ln.lim.AcquireConn(ip)
		if err != nil {
			c.Close()
			if le, ok := errors.AsType[*LimitError](err); ok && ln.onDeny != nil {
				ln.onDeny(ip, le)
			}
			continue
		}
		return &limitedConn{Conn: c, release: release}, nil
	}
}

type limitedConn struct {
	net.Conn
	release func()
}

// CloseWrite keeps the half-close net/http uses before closing a
// connection it answered with an error.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}

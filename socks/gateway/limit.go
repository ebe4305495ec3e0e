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
	// separate count, the HTTP(S) TCP connections).
	MaxTotal int
}

// DefaultLimits are the gateway's defaults: 20 new streams per second per
// source with bursts of 40, 64 open at a time per source, 10000 overall.
func DefaultLimits() Limits {
	return Limits{ConnRate: 20, ConnBurst: 40, MaxStreams: 64, MaxTotal: 10000}
}

const (
	// idleEvict is how long a source's state is kept after its last use
	// (and only once its token bucket has refilled, so evicting it forgives
	// nothing).
	idleEvict = 5 * time.Minute
	// sweepEvery is how often Acquire looks for sources to evict.
	sweepEvery = time.Minute
	// reportEvery is how often a refused source gets a log line.
	reportEvery = 10 * time.Second
	// capRetry is the Retry-After a client over an open-stream cap is
	// given: a stream may end any time.
	capRetry = time.Second
)

// LimitError is the error of a refused Acquire. It wraps ErrRateLimited.
type LimitError struct {
	// Reason says which budget ran out: "rate" (new streams per second),
	// "streams" (this source's open streams or connections) or "total"
	// (the gateway's).
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
// TCP peer, never anything a client wrote (X-Forwarded-For). Its memory is
// bounded by the sources active in the last few minutes: idle ones are
// evicted. It is safe for concurrent use.
type Limiter struct {
	limits Limits
	now    func() time.Time // a test's clock

	mu        sync.Mutex
	sources   map[netip.Prefix]*source
	streams   int // open streams, all sources
	conns     int // open HTTP(S) connections, all sources
	lastSweep time.Time
}

type source struct {
	bucket   *rate.Limiter
	streams  int
	conns    int
	lastUsed time.Time
	reported time.Time // last refusal that was logged
	dropped  int       // refusals since then
}

// NewLimiter returns a Limiter enforcing limits.
func NewLimiter(limits Limits) *Limiter {
	def := DefaultLimits()
	if limits.ConnRate <= 0 || math.IsNaN(limits.ConnRate) {
		limits.ConnRate = def.ConnRate
	}
	if limits.ConnBurst <= 0 {
		limits.ConnBurst = def.ConnBurst
	}
	if limits.MaxStreams <= 0 {
		limits.MaxStreams = def.MaxStreams
	}
	if limits.MaxTotal <= 0 {
		limits.MaxTotal = def.MaxTotal
	}
	return &Limiter{limits: limits, now: time.Now, sources: make(map[netip.Prefix]*source)}
}

// Limits returns the budgets in force.
func (l *Limiter) Limits() Limits { return l.limits }

// Acquire admits one new stream from ip: it takes a token from the
// source's bucket and a slot of its concurrent streams and of the overall
// ones. release gives the slots back; it may be called more than once. A
// refusal is a *LimitError and takes nothing.
func (l *Limiter) Acquire(ip netip.Addr) (release func(), err error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.source(ip, now)
	switch {
	case l.streams >= l.limits.MaxTotal:
		return nil, l.refuse(s, now, "total", capRetry)
	case s.streams >= l.limits.MaxStreams:
		return nil, l.refuse(s, now, "streams", capRetry)
	case !s.bucket.AllowN(now, 1):
		// The time until the bucket holds a whole token again.
		wait := time.Duration((1 - s.bucket.TokensAt(now)) / l.limits.ConnRate * float64(time.Second))
		return nil, l.refuse(s, now, "rate", wait)
	}
	s.streams++
	l.streams++
	return l.releaser(func() { s.streams--; l.streams-- }, s), nil
}

// AcquireConn admits one TCP connection from ip to an HTTP(S) listener:
// it counts against MaxStreams per source and MaxTotal overall (separately
// from streams), but takes no token, since each request on it does.
func (l *Limiter) AcquireConn(ip netip.Addr) (release func(), err error) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.source(ip, now)
	switch {
	case l.conns >= l.limits.MaxTotal:
		return nil, l.refuse(s, now, "total", capRetry)
	case s.conns >= l.limits.MaxStreams:
		return nil, l.refuse(s, now, "streams", capRetry)
	}
	s.conns++
	l.conns++
	return l.releaser(func() { s.conns--; l.conns-- }, s), nil
}

// Sources returns how many sources the Limiter holds state for.
func (l *Limiter) Sources() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.sources)
}

func (l *Limiter) releaser(undo func(), s *source) func() {
	var done atomic.Bool
	return func() {
		if done.Swap(true) {
			return
		}
		now := l.now()
		l.mu.Lock()
		undo()
		s.lastUsed = now
		l.mu.Unlock()
	}
}

// source returns ip's state, creating it, and evicts idle sources once in
// a while. l.mu is held.
func (l *Limiter) source(ip netip.Addr, now time.Time) *source {
	if now.Sub(l.lastSweep) >= sweepEvery {
		l.lastSweep = now
		for k, s := range l.sources {
			if s.streams == 0 && s.conns == 0 && now.Sub(s.lastUsed) >= idleEvict &&
				s.bucket.TokensAt(now) >= float64(l.limits.ConnBurst) {
				delete(l.sources, k)
			}
		}
	}
	k := sourceKey(ip)
	s := l.sources[k]
	if s == nil {
		s = &source{bucket: rate.NewLimiter(rate.Limit(l.limits.ConnRate), l.limits.ConnBurst)}
		l.sources[k] = s
	}
	s.lastUsed = now
	return s
}

func (l *Limiter) refuse(s *source, now time.Time, reason string, wait time.Duration) *LimitError {
	secs := max(1, math.Ceil(wait.Seconds()))
	e := &LimitError{Reason: reason, RetryAfter: time.Duration(secs) * time.Second}
	s.dropped++
	if s.reported.IsZero() || now.Sub(s.reported) >= reportEvery {
		e.Report, e.Suppressed = true, s.dropped-1
		s.reported, s.dropped = now, 0
	}
	return e
}

// sourceKey is the budget ip counts against: the address itself for IPv4
// (IPv4-mapped IPv6 included), its /64 for IPv6. Invalid addresses share
// one budget.
func sourceKey(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// addrIP returns the IP of a connection's remote address; the zero Addr
// if it has none.
func addrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
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
		ip := addrIP(c.RemoteAddr())
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

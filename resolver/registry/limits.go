package registry

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/limit"
)

// Limits bound what the strangers who reach a rendezvous node may make it
// spend. A zero field takes its default from DefaultLimits.
type Limits struct {
	// MaxConns caps the nodes' connections in all, and
	// MaxConnsPerSource those from one source address (IPv4, or IPv6 /64;
	// many devices may share one carrier NAT's address).
	MaxConns          int
	MaxConnsPerSource int
	// MaxStreams caps the registry requests one connection has open.
	MaxStreams int
	// HandshakeRate is how many new connections per second the node takes
	// before sources must prove their address first (a QUIC Retry).
	HandshakeRate float64
	// LookupRate is how many lookups per second one key may make, with
	// bursts of twice that.
	LookupRate float64
	// MaxRegistrations caps the nodes registered here.
	MaxRegistrations int
}

// DefaultLimits are a rendezvous node's defaults: sized for the ~100–200k
// idle devices one node holds (quic-go costs ~53 KiB per connection).
func DefaultLimits() Limits {
	return Limits{MaxConns: 250_000, MaxConnsPerSource: 1024, MaxStreams: 64, HandshakeRate: 500,
		LookupRate: 50, MaxRegistrations: 200_000}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	return Limits{MaxConns: limit.OrDefault(l.MaxConns, d.MaxConns),
		MaxConnsPerSource: limit.OrDefault(l.MaxConnsPerSource, d.MaxConnsPerSource),
		MaxStreams:        limit.OrDefault(l.MaxStreams, d.MaxStreams),
		HandshakeRate:     limit.OrDefault(l.HandshakeRate, d.HandshakeRate),
		LookupRate:        limit.OrDefault(l.LookupRate, d.LookupRate),
		MaxRegistrations:  limit.OrDefault(l.MaxRegistrations, d.MaxRegistrations)}
}

// Refusals counts what the Limits refused, by limit; for tests and
// metrics.
type Refusals struct {
	Conns, Lookups, Registrations atomic.Uint64
	// Validated counts the new connections asked to prove their address.
	Validated atomic.Uint64
}

// Sizes of the bookkeeping.
const (
	// reportEvery, reportBurst and reportKeys bound the log lines
	// refusals cost: reportBurst per source or key per reportEvery, over
	// reportKeys at a time.
	reportEvery = 10 * time.Second
	reportBurst = 1
	reportKeys  = 256
	// lookupKeys bounds the keys whose lookup rate is tracked; past it,
	// the rest share one budget.
	lookupKeys = 65536
)

// guard applies a Server's Limits.
type guard struct {
	limits     Limits
	conns      *limit.Counter[netip.Prefix]
	handshakes *rate.Limiter
	lookups    *limit.Rate[identity.ID]
	report     *limit.Reporter
	refused    *Refusals
	log        zerolog.Logger
}

func newGuard(l Limits, refused *Refusals, log zerolog.Logger) *guard {
	l = l.withDefaults()
	return &guard{limits: l, refused: refused, log: log,
		conns:      limit.NewCounter[netip.Prefix](l.MaxConnsPerSource, l.MaxConns),
		handshakes: rate.NewLimiter(rate.Limit(l.HandshakeRate), int(2*l.HandshakeRate)+1),
		lookups:    limit.NewRate[identity.ID](l.LookupRate, int(2*l.LookupRate)+1, lookupKeys),
		report:     limit.NewReporter(reportEvery, reportBurst, reportKeys)}
}

var errTooManyConns = errors.New("too many connections")

// listenConfig is what the relay's QUIC listener needs to apply the
// limits on connections.
func (g *guard) listenConfig() transport.ListenConfig {
	return transport.ListenConfig{
		MaxStreams: int64(g.limits.MaxStreams),
		Admit:      g.admit,
		Validate: func(net.Addr) bool {
			if g.handshakes.Allow() {
				return false
			}
			g.refused.Validated.Add(1)
			return true
		},
	}
}

// admit counts a new connection against its source's cap and the total,
// until its context ends.
func (g *guard) admit(ctx context.Context, info *quic.ClientInfo) (context.Context, error) {
	src := limit.SourceOf(info.RemoteAddr)
	release, over := g.conns.Acquire(src)
	if over != "" {
		g.refused.Conns.Add(1)
		g.refusal(src.String(), "connections", over, "connection refused")
		return nil, errTooManyConns
	}
	context.AfterFunc(ctx, release)
	return ctx, nil
}

// lookup reports whether id may look a device up now.
func (g *guard) lookup(id identity.ID) bool {
	if g.lookups.Allow(id, time.Now()) {
		return true
	}
	g.refused.Lookups.Add(1)
	g.refusal(id.String(), "lookups", "rate", "lookup refused")
	return false
}

// refusal logs a refusal, at most reportBurst per key per reportEvery.
func (g *guard) refusal(key, what, over, msg string) {
	ok, n := g.report.Note(key, time.Now())
	if !ok {
		return
	}
	ev := g.log.Warn().Str("from", key).Str("limit", what).Str("over", over)
	if n > 0 {
		ev = ev.Int("suppressed", n)
	}
	ev.Msg(msg)
}

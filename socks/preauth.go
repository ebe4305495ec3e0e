package socks

import (
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/transport/limit"
)

// PreAuth bounds what clients not yet authorized can make a server hold:
// each accepted connection takes a slot of its source (an IPv4 address,
// or an IPv6 /64, one subscriber's usual allocation) and of the total
// until it is authorized — its password checked, its user admitted — or
// gone. A connection over either cap is closed at once, unanswered, and
// costs nothing more. While it holds a slot a connection costs a
// goroutine, its buffers (at most an HTTP request's 64 KiB of headers) and
// HandshakeTimeout at most, so strangers can hold at most
// total × (64 KiB + a goroutine) for 10 s at a time.
type PreAuth struct {
	held   *limit.Counter[string]
	report *limit.Reporter
	log    zerolog.Logger
	users  *OwnerOnly // if set, loopback clients count by user (KeyLocalByUser)

	// Refused counts the connections closed over a cap, for metrics:
	// [0] over the per-source cap, [1] over the total.
	Refused [2]atomic.Uint64
}

// Defaults of socksd: a browser opening dozens of connections at once
// stays well under the per-source cap, since each is authorized within a
// round trip (or one password check, which the others then find cached).
const (
	DefaultPreAuthPerSource = 64
	DefaultPreAuthTotal     = 512
)

// NewPreAuth returns caps of perSource per source and total in all,
// logging refusals at most once per source per 10 s.
func NewPreAuth(perSource, total int, log zerolog.Logger) *PreAuth {
	return &PreAuth{held: limit.NewCounter[string](perSource, total),
		report: limit.NewReporter(refusalReportEvery, 1, refusalReportKeys), log: log}
}

// acquire takes a slot for c. release is idempotent; ok is false when c
// is over a cap (and must be closed). A nil PreAuth admits everyone.
func (p *PreAuth) acquire(c net.Conn) (release func(), ok bool) {
	if p == nil {
		return func() {}, true
	}
	src := p.source(c)
	release, over := p.held.Acquire(src)
	if release != nil {
		return release, true
	}
	if over == limit.OverTotal {
		p.Refused[1].Add(1)
	} else {
		p.Refused[0].Add(1)
	}
	if log, n := p.report.Note(src, time.Now()); log {
		p.log.Info().Str("client", remote(c)).Str("over", over).Int("suppressed", n).
			Msg("socks connection closed: too many not yet authorized")
	}
	return nil, false
}

// KeyLocalByUser makes loopback clients count by their user, as users
// finds it, not by their address: all local users share 127.0.0.1, and
// one of them must not hold the slots of the others, socksd's owner
// among them.
func (p *PreAuth) KeyLocalByUser(users *OwnerOnly) { p.users = users }

// source is what c's slot counts against: its user for a loopback client
// (KeyLocalByUser), else its address's source.
func (p *PreAuth) source(c net.Conn) string {
	src := limit.SourceOf(c.RemoteAddr())
	if p.users != nil && src.Addr().IsLoopback() {
		if uid, ok := p.users.uidOf(c); ok {
			return "uid " + strconv.FormatUint(uint64(uid), 10)
		}
	}
	return src.String()
}

package peer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport/limit"
)

// Limits bound what clients can make the agent spend. Any key can open an
// end-to-end connection to a device, so until a key has passed some port's
// policy ("unauthorized") its connections and their streams are capped
// small; a key that passed is capped only by MaxConns (and the QUIC
// connection's own stream limit).
type Limits struct {
	// MaxConns caps the connections the agent holds, in all.
	MaxConns int
	// MaxUnauthorized caps the connections of keys no port has allowed
	// yet, in all, and UnauthorizedPerKey those of one such key.
	MaxUnauthorized    int
	UnauthorizedPerKey int
	// UnauthorizedStreams caps the streams an unauthorized connection has
	// open at a time; more are reset as they arrive, at no cost but the
	// reset.
	UnauthorizedStreams int
}

// DefaultLimits are the agent's defaults.
func DefaultLimits() Limits {
	return Limits{MaxConns: 1024, MaxUnauthorized: 64, UnauthorizedPerKey: 4, UnauthorizedStreams: 8}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	return Limits{MaxConns: limit.OrDefault(l.MaxConns, d.MaxConns),
		MaxUnauthorized:     limit.OrDefault(l.MaxUnauthorized, d.MaxUnauthorized),
		UnauthorizedPerKey:  limit.OrDefault(l.UnauthorizedPerKey, d.UnauthorizedPerKey),
		UnauthorizedStreams: limit.OrDefault(l.UnauthorizedStreams, d.UnauthorizedStreams)}
}

// Refusals, by what ran out; exported for tests and metrics.
type Refusals struct {
	Conns, Unauthorized, Streams atomic.Uint64
}

// Timings and sizes of admission.
const (
	// reportEvery, reportBurst and reportKeys bound the log lines refusals
	// and denials cost: at most reportBurst per client key per reportEvery
	// — enough that an admin sees each attempt a person makes — over at
	// most reportKeys keys at a time, keys past those sharing one burst:
	// (reportKeys+1)·reportBurst lines per reportEvery at worst.
	reportEvery = 10 * time.Second
	reportBurst = 10
	reportKeys  = 16
	// allowedKeys bounds the memory of which keys passed a policy; a key
	// forgotten is capped again until it passes again.
	allowedKeys = 4096
)

// admission is the agent's bookkeeping of what each client holds.
type admission struct {
	limits  Limits
	conns   *limit.Counter[struct{}]
	unauth  *limit.Counter[identity.ID]
	allowed keySet
	report  *limit.Reporter
}

func newAdmission(l Limits) *admission {
	l = l.withDefaults()
	return &admission{limits: l,
		conns:   limit.NewCounter[struct{}](l.MaxConns, l.MaxConns),
		unauth:  limit.NewCounter[identity.ID](l.UnauthorizedPerKey, l.MaxUnauthorized),
		allowed: keySet{max: allowedKeys, m: make(map[identity.ID]struct{})},
		report:  limit.NewReporter(reportEvery, reportBurst, reportKeys)}
}

// keySet is a bounded set of keys; past max, the oldest is forgotten.
type keySet struct {
	mu    sync.Mutex
	max   int
	m     map[identity.ID]struct{}
	order []identity.ID
}

func (s *keySet) has(id identity.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[id]
	return ok
}

func (s *keySet) add(id identity.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return
	}
	if len(s.order) >= s.max {
		delete(s.m, s.order[0])
		s.order = s.order[1:]
	}
	s.m[id] = struct{}{}
	s.order = append(s.order, id)
}

// client is one connection's standing.
type client struct {
	id         identity.ID
	authorized atomic.Bool
	inflight   atomic.Int32 // streams being served while unauthorized
	release    func()       // its unauthorized slot, if it holds one
}

package peer

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// portTable is one port table the agent serves: never changed once built,
// replaced whole by SetPorts, so a stream decides on one consistent table.
type portTable struct {
	ports map[uint16]Port
	fleet identity.ID // for Protected ports without a Fleet of their own
}

func newPortTable(ports []Port, fleet identity.ID) *portTable {
	t := &portTable{ports: make(map[uint16]Port, len(ports)), fleet: fleet}
	for _, p := range ports {
		t.ports[p.Remote] = p
	}
	return t
}

// fleetOf is the fleet whose members may use p, if p is Protected.
func (t *portTable) fleetOf(p Port) identity.ID {
	if p.Fleet != (identity.ID{}) {
		return p.Fleet
	}
	return t.fleet
}

// admitsKey reports whether some port admits client by its key alone,
// with no credential: a public port, or a private one listing it.
func (t *portTable) admitsKey(client identity.ID) bool {
	for _, p := range t.ports {
		if p.admitsByKey(client) {
			return true
		}
	}
	return false
}

// decide is the table's verdict on a stream already granted once: its
// port still published, and its client still allowed with the credential
// it presented then.
func (t *portTable) decide(port uint16, client identity.ID, cred []byte, now time.Time) decision {
	p, ok := t.ports[port]
	if !ok {
		return decision{stream.StatusNotPublished, "port no longer published"}
	}
	return authorize(p, client, cred, t.fleetOf(p), true, now)
}

// liveStream is an open stream a port table allowed.
type liveStream struct {
	port   uint16
	client identity.ID
	cred   []byte // the credential it was allowed with (Protected ports)
	cancel func(error)
}

// revokedError ends a stream a new port table no longer allows.
type revokedError struct{ reason string }

func (e revokedError) Error() string { return "access revoked: " + e.reason }

// liveStreams holds the port table in force and the streams it allows, so
// that a new table ends exactly the streams it no longer allows.
type liveStreams struct {
	table atomic.Pointer[portTable]

	mu      sync.Mutex // orders swaps against streams joining
	streams map[*liveStream]struct{}
}

func (l *liveStreams) init(ports []Port, fleet identity.ID) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.table.Load() == nil {
		l.table.Store(newPortTable(ports, fleet))
	}
}

func (l *liveStreams) policy() *portTable { return l.table.Load() }

// track adds s, allowed by table decided, to the live streams. If another
// table replaced it meanwhile, s is decided again by the one in force, and
// joins only if that one allows it too: a swap never misses a stream.
// untrack must be called when s ends.
func (l *liveStreams) track(decided *portTable, s *liveStream) (untrack func(), d decision) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur := l.table.Load(); cur != decided {
		if d = cur.decide(s.port, s.client, s.cred, time.Now()); d.code != stream.StatusOK {
			return func() {}, d
		}
	}
	if l.streams == nil {
		l.streams = make(map[*liveStream]struct{})
	}
	l.streams[s] = struct{}{}
	return func() {
		l.mu.Lock()
		delete(l.streams, s)
		l.mu.Unlock()
	}, decision{code: stream.StatusOK}
}

// swap puts t in force and ends the live streams it does not allow,
// returning how many.
func (l *liveStreams) swap(t *portTable) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.table.Store(t)
	now := time.Now()
	n := 0
	for s := range l.streams {
		if d := t.decide(s.port, s.client, s.cred, now); d.code != stream.StatusOK {
			s.cancel(revokedError{d.reason})
			delete(l.streams, s)
			n++
		}
	}
	return n
}

// SetPorts replaces the agent's port table (Ports and Fleet) at run time.
// New streams are decided by the new table at once; open streams it still
// allows go on untouched, and those it does not — their port gone, their
// client no longer listed, their credential no longer for the port's
// fleet — are reset, logged with outcome "revoked". It returns how many
// were. Check the table first (Publish.Ports): SetPorts takes it as is.
func (a *Agent) SetPorts(ports []Port, fleet identity.ID) (revoked int) {
	a.live.init(nil, identity.ID{}) // before Serve: the table Serve starts with
	return a.live.swap(newPortTable(ports, fleet))
}

// Package registry is the rendezvous node's registry: the server side of
// the registry protocol (resolver/internal/wire), which records who is
// online on the node's outer connections, answers lookups, and attaches
// each registered node to the packet relay; and the presence backends that
// keep who is online where — in memory for one node, in Redis for several.
//
// Invariants: a node registers only the ID whose key it proved in the TLS
// handshake of its connection; an Endpoint belongs to the key that holds
// its live registration; a registration ends with its connection, or, a
// leased one, when its keeps stop or the node releases it; and a device's
// record is removed only if it is still that registration's.
package registry

import (
	"context"
	"errors"
	"sync"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// Outcomes of presence operations; callers branch on them with errors.Is.
var (
	// ErrNotFound: no online device has that ID.
	ErrNotFound = errors.New("device unknown or offline")
	// ErrUnavailable: the shared registry (Redis) could not be asked.
	ErrUnavailable = errors.New("shared registry unavailable")
)

// Record is what the registry knows of an online device.
type Record struct {
	Endpoint transport.Endpoint
	// Node and Addr name the rendezvous node the device is homed on, for
	// presence shared by several nodes (RedisPresence); zero in memory.
	Node identity.ID
	Addr string // the home node's advertise address, HOST:PORT
}

// Presence stores which devices are online. Implementations must be safe
// for concurrent use. Get returns ErrNotFound for a device with no record, and errors
// wrapping ErrUnavailable when the store cannot be asked.
// Delete removes the record only if it is still rec: a device that
// reconnected (a newer record) must not be removed by its old connection
// going away.
type Presence interface {
	Set(ctx context.Context, id identity.ID, rec Record) error
	Delete(ctx context.Context, id identity.ID, rec Record) error
	Get(ctx context.Context, id identity.ID) (Record, error)
}

// MemoryPresence keeps presence in this process: the one-node default.
type MemoryPresence struct {
	mu sync.RWMutex
	m  map[identity.ID]Record
}

// NewMemoryPresence returns an empty in-memory presence store.
func NewMemoryPresence() *MemoryPresence {
	return &MemoryPresence{m: make(map[identity.ID]Record)}
}

// Set implements Presence.
func (p *MemoryPresence) Set(_ context.Context, id identity.ID, rec Record) error {
	p.mu.Lock()
	p.m[id] = rec
	p.mu.Unlock()
	return nil
}

// Delete implements Presence.
func (p *MemoryPresence) Delete(_ context.Context, id identity.ID, rec Record) error {
	p.mu.Lock()
	if cur, ok := p.m[id]; ok && cur == rec {
		delete(p.m, id)
	}
	p.mu.Unlock()
	return nil
}

// Get implements Presence.
func (p *MemoryPresence) Get(_ context.Context, id identity.ID) (Record, error) {
	p.mu.RLock()
	rec, ok := p.m[id]
	p.mu.RUnlock()
	if !ok {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

// Len returns the number of online devices.
func (p *MemoryPresence) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.m)
}

package resolver

import (
	"context"
	"sync"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
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
// for concurrent use. Get returns ErrOffline for a device with no record.
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
		return Record{}, ErrOffline
	}
	return rec, nil
}

// Len returns the number of online devices.
func (p *MemoryPresence) Len() int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return len(p.m)
}

//go:build linux && !386

package transport

import (
	"net"
	"strconv"
	"sync"
	"time"
)

// IPv6 zones (link-local scopes) are interface names in netip, interface
// indexes in a sockaddr. Looking an interface up asks the kernel for all of
// them (a netlink dump), far too much for every datagram: any host on a
// link may send from a link-local address, and a relay may be given one.
// So the hook-free calls (udpio_linux.go) keep, as the net package does
// for its own, a table of the interfaces, read again at most once a second
// and only when a zone or index is not in it.

// zoneRefetch bounds how often a miss reads the interfaces again.
const zoneRefetch = time.Second

// zoneCache maps zones to indexes and back.
type zoneCache struct {
	fetch func() ([]net.Interface, error) // net.Interfaces; tests count calls

	mu      sync.Mutex
	fetched time.Time // zero: never
	index   map[string]uint32
	name    map[uint32]string
}

var zones = &zoneCache{fetch: net.Interfaces}

// refresh reads the interfaces again unless it did within zoneRefetch.
// Called with mu held.
func (z *zoneCache) refresh(now time.Time) {
	if !z.fetched.IsZero() && now.Sub(z.fetched) < zoneRefetch {
		return
	}
	z.fetched = now
	ifs, err := z.fetch()
	if err != nil {
		return // keep what is known
	}
	z.index = make(map[string]uint32, len(ifs))
	z.name = make(map[uint32]string, len(ifs))
	for _, ifi := range ifs {
		z.index[ifi.Name] = uint32(ifi.Index)
		z.name[uint32(ifi.Index)] = ifi.Name
	}
}

// lookup finds key in the table that table picks, reading the interfaces
// again first when it is missing.
func lookup[K comparable, V any](z *zoneCache, key K, table func(*zoneCache) map[K]V) (V, bool) {
	z.mu.Lock()
	defer z.mu.Unlock()
	v, ok := table(z)[key]
	if !ok {
		z.refresh(time.Now())
		v, ok = table(z)[key]
	}
	return v, ok
}

// scopeID is the interface index of an IPv6 zone, as the net package reads
// one: an interface's name, or an index in decimal; 0 when it is neither.
func (z *zoneCache) scopeID(zone string) uint32 {
	if idx, ok := lookup(z, zone, func(z *zoneCache) map[string]uint32 { return z.index }); ok {
		return idx
	}
	n, err := strconv.ParseUint(zone, 10, 32)
	if err != nil {
		return 0
	}
	return uint32(n)
}

// zone is the IPv6 zone of an interface index, as the net package writes
// it: the interface's name, or the index in decimal.
func (z *zoneCache) zone(idx uint32) string {
	if name, ok := lookup(z, idx, func(z *zoneCache) map[uint32]string { return z.name }); ok {
		return name
	}
	return strconv.FormatUint(uint64(idx), 10)
}

package transport

import "net/netip"

// RelayRoute names a rendezvous node that carries relay frames: where to
// send them, and how the node was configured (ID@HOST:PORT), for status.
type RelayRoute struct {
	Addr netip.AddrPort
	Name string
}

// IsZero reports whether r names no relay.
func (r RelayRoute) IsZero() bool { return !r.Addr.IsValid() }

func (r RelayRoute) String() string {
	if r.Name != "" {
		return r.Name
	}
	if r.Addr.IsValid() {
		return r.Addr.String()
	}
	return ""
}

// routes is a node's routing table for relayed packets: which rendezvous
// node carries the frames to each peer Endpoint, and which rendezvous nodes
// frames are accepted from. It is immutable once published (SetRoutes), so
// the packet path reads it with one atomic load and no lock.
type routes struct {
	home RelayRoute
	// via holds peers homed on another rendezvous node (a redirect): their
	// frames go to that node. Empty on a node with one rendezvous node.
	via map[Endpoint]RelayRoute
	// others are the relays of via, from which frames are accepted too.
	others map[netip.AddrPort]struct{}
}

var noRoutes = &routes{}

// SetRoutes replaces the node's routing table: frames go to home, except
// those to the peers in via, which go to the relay given there; frames are
// accepted from home and from every relay in via. The caller (the owner
// of the node's rendezvous sessions, resolver.Client) keeps one session
// registered at each of those relays for as long as it routes through it,
// and publishes a new table whenever that changes. via is copied.
func (n *Node) SetRoutes(home RelayRoute, via map[Endpoint]RelayRoute) {
	rt := &routes{home: unmapRoute(home)}
	if len(via) > 0 {
		rt.via = make(map[Endpoint]RelayRoute, len(via))
		rt.others = make(map[netip.AddrPort]struct{})
		for ep, r := range via {
			r = unmapRoute(r)
			rt.via[ep] = r
			rt.others[r.Addr] = struct{}{}
		}
	}
	n.routes.Store(rt)
}

func unmapRoute(r RelayRoute) RelayRoute {
	r.Addr = netip.AddrPortFrom(r.Addr.Addr().Unmap(), r.Addr.Port())
	return r
}

// relayFor returns the relay that carries frames to ep.
func (rt *routes) relayFor(ep Endpoint) (RelayRoute, bool) {
	if len(rt.via) != 0 {
		if r, ok := rt.via[ep]; ok {
			return r, true
		}
	}
	return rt.home, !rt.home.IsZero()
}

// accepts reports whether frames from addr are relay frames.
func (rt *routes) accepts(addr netip.AddrPort) bool {
	if rt.home.Addr == addr && addr.IsValid() {
		return true
	}
	if len(rt.others) == 0 {
		return false
	}
	_, ok := rt.others[addr]
	return ok
}

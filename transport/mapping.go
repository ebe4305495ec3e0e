package transport

// The router's mapping: a node asks its default gateway for a public
// mapping of its socket's port (transport/portmap: PCP, NAT-PMP or
// UPnP-IGD) and offers the mapped address as one more candidate. A peer's
// pings to it come through the router whatever its NAT does for outbound
// traffic, so a symmetric NAT with a willing router is as good as a cone
// to the peer — the one way two symmetric sides end direct (hardnat.go handles one).
//
// Asked only by a node whose relay is off loopback (one whose relay is on
// loopback meets only peers on this machine, disco.go), after its first
// registration; nothing answering costs nine packets (portmap's bound),
// then one more discovery every mapRetry. The mapped address is offered
// only if public: a router whose own outside is a private or carrier-grade
// address maps to nowhere a peer could reach.

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/transport/portmap"
)

const (
	// mapRetry is the wait before asking again after discovery found no
	// server, the router refused, or the mapping lapsed: the network may
	// have changed under the node.
	mapRetry = 10 * time.Minute
	// mapWaitHome is how often a node that has not registered yet looks
	// again whether it has.
	mapWaitHome = time.Second
)

// MapPort asks the router for a mapping of the node's port and keeps it,
// offered as a candidate, until Close, which deletes it. Calls after the
// first do nothing.
func (n *Node) MapPort() {
	n.mapMu.Lock()
	defer n.mapMu.Unlock()
	if n.mapStop != nil || n.closed {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.mapStop = cancel
	n.wg.Go(func() { n.runMapping(ctx) })
}

// Mapped is the public address the router mapped the node's port to, if
// any.
func (n *Node) Mapped() netip.AddrPort {
	if m := n.mapped.Load(); m != nil {
		return *m
	}
	return netip.AddrPort{}
}

// stopMapping ends MapPort's goroutine (Close waits for it).
func (n *Node) stopMapping() {
	n.mapMu.Lock()
	defer n.mapMu.Unlock()
	n.closed = true
	if n.mapStop != nil {
		n.mapStop()
	}
}

func (n *Node) runMapping(ctx context.Context) {
	defer n.mapped.Store(nil)
	for {
		home := n.routes.Load().home
		switch {
		case home.IsZero():
			if !mapSleep(ctx, mapWaitHome) {
				return
			}
			continue
		case home.Addr.Addr().IsLoopback():
			return
		}
		if gw, err := portmap.DefaultGateway(); err == nil {
			_ = portmap.Run(ctx, portmap.Config{
				Gateway:  netip.AddrPortFrom(gw, portmap.ServerPort),
				Port:     n.sock.LocalAddr().Port(),
				OnMapped: n.setMapped,
			})
		}
		if !mapSleep(ctx, mapRetry) {
			return
		}
	}
}

func (n *Node) setMapped(a netip.AddrPort) {
	ip := a.Addr().Unmap()
	if !a.IsValid() || !ip.IsGlobalUnicast() || slices.ContainsFunc(privateRanges, func(p netip.Prefix) bool { return p.Contains(ip) }) {
		n.mapped.Store(nil)
		return
	}
	a = netip.AddrPortFrom(ip, a.Port())
	n.mapped.Store(&a)
}

// mapSleep waits d, or less if ctx ends first; it reports whether ctx is
// still on.
func mapSleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

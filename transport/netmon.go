package transport

// Network changes: a laptop leaves one Wi-Fi for another, a VPN takes the
// default route or gives it back. The node's socket survives (it is bound
// to the unspecified address, so the kernel picks the new source), and so
// do its end-to-end connections (QUIC's peer address is an Endpoint, not a
// path), but three things the node learned on the old network are wrong
// on the new one: the address its relay saw it at (its public candidate),
// the address its relay forwards frames to (bound at registration), and
// the direct paths (the peer's NAT lets in only the old public mapping).
// Left alone, the relay notices the move only at the node's next registry
// ping (RelayPing) and never tells it its new public address, and each
// direct path runs into a black hole until its pongs stop (pathTrust):
// measured, a new ssh failed for ~11 s and the path never went direct
// again.
//
// So the node watches for changes and acts at once:
//
//   - What counts as a change is the host's fingerprint: the addresses of
//     its up interfaces, and the source address the kernel would use
//     toward the home relay (which follows the default route, also when
//     only the route changed). Events only say "look again"; a change is
//     a new fingerprint, so that link flaps and route cache noise that
//     leave both alone cost nothing.
//   - Events: on Linux a netlink socket subscribed to link, address and
//     route changes (the standard library's syscall package; no new
//     dependency). It costs nothing while nothing changes and wakes within
//     netChangeSettle of a change. Elsewhere, or where netlink cannot be
//     opened, the fingerprint is read every netPollEvery: a few syscalls,
//     and at most that much later.
//   - On a change the node forgets its public address, drops every direct
//     path (packets go to the relay until a pong proves a path again: on a
//     path that still works that is one round trip), takes its scope and
//     its candidates from the new reading of its interfaces (the node
//     reads them with the fingerprint, and only then: Node.ifaces),
//     restarts probing from its first, fastest round, and tells whoever
//     waits on NetworkChanged — the owner of its rendezvous sessions,
//     which registers again from the new address (resolver). Its new
//     public address then goes to every peer as a new candidate, and a
//     peer that sees the old address leave our candidates drops its
//     direct path to it and probes again (path.go, runPath).

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

const (
	// netChangeSettle is how long the monitor waits after an event for
	// more of the same burst (leaving a network removes an address and
	// routes, joining one adds them: a handful of messages within
	// milliseconds) before it reads the fingerprint.
	netChangeSettle = 100 * time.Millisecond
	// netPollEvery is how often the fingerprint is read without events.
	netPollEvery = 2 * time.Second
)

// netState is the host's network as netMonitor compares it (netFingerprint).
type netState struct {
	addrs string         // the up interfaces' addresses
	relay netip.AddrPort // the relay the route was asked for
	via   string         // the source address toward it
}

// netMonitor reports changes of the host's network fingerprint. events
// (nil where there are none) says when to look; poll, if not zero, looks
// that often anyway. A new relay is not a change of the network: the
// route toward it is only compared with one read for the same relay.
type netMonitor struct {
	read    func() netState
	events  <-chan struct{}
	poll    time.Duration
	settle  time.Duration
	changed func()
}

// run watches until ctx ends; last is the reading changes are told from,
// the caller's first.
func (m *netMonitor) run(ctx context.Context, last netState) {
	var tick <-chan time.Time
	if m.poll > 0 {
		t := time.NewTicker(m.poll)
		defer t.Stop()
		tick = t.C
	}
	settle := time.NewTimer(0)
	<-settle.C
	defer settle.Stop()
	var settling <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.events:
			// The first event of a burst starts the wait; later ones
			// do not extend it, so a busy link cannot postpone a check
			// for ever.
			if settling == nil {
				settle.Reset(m.settle)
				settling = settle.C
			}
			continue
		case <-settling:
			settling = nil
		case <-tick:
		}
		now := m.read()
		moved := now.addrs != last.addrs || (now.relay == last.relay && now.via != last.via)
		last = now
		if moved {
			m.changed()
		}
	}
}

// netFingerprint is the host's network as netMonitor compares it: the
// addresses of its up interfaces (link-local ones left out: they come and
// go with links and never carry our traffic off the link) and the source
// address toward relay, if relay is valid.
func netFingerprint(relay netip.AddrPort) netState {
	var parts []string
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, p := range interfacePrefixes(addrs) {
			if !p.Addr().IsLinkLocalUnicast() {
				parts = append(parts, ifc.Name+"="+p.String())
			}
		}
	}
	slices.Sort(parts)
	st := netState{addrs: strings.Join(parts, " "), relay: relay}
	if relay.IsValid() {
		// Connecting a UDP socket sends nothing: it only asks the kernel
		// for the route, whose source address is what we want.
		if c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(relay)); err == nil {
			st.via = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap().String()
			c.Close()
		} else {
			st.via = "none"
		}
	}
	return st
}

// netWatch is a node's monitor and what it feeds.
type netWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu sync.Mutex
	ch chan struct{} // closed at the next change
}

// startNetMonitor starts the node's monitor; Close stops it.
func (n *Node) startNetMonitor() {
	ctx, cancel := context.WithCancel(context.Background())
	w := &n.net
	w.cancel = cancel
	w.ch = make(chan struct{})
	m := &netMonitor{
		read: func() netState {
			n.readInterfaces()
			return netFingerprint(n.routes.Load().home.Addr)
		},
		settle:  netChangeSettle,
		changed: n.networkChanged,
	}
	events, err := watchNetlink(ctx, &w.wg)
	if err != nil || events == nil {
		m.poll = netPollEvery
	} else {
		m.events = events
	}
	// The first reading is taken here, so that a node has its interfaces
	// (Node.ifaces) once it is made.
	last := m.read()
	w.wg.Go(func() { m.run(ctx, last) })
}

// stopNetMonitor stops the monitor and waits for it.
func (n *Node) stopNetMonitor() {
	if n.net.cancel != nil {
		n.net.cancel()
		n.net.wg.Wait()
	}
}

// NetworkChanged returns a channel that is closed at the host's next
// network change (see the top of this file). To miss none, take the next
// one as soon as this one is closed, before acting on the change.
func (n *Node) NetworkChanged() <-chan struct{} {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	return n.net.ch
}

// NetworkChanges counts the changes the node has seen.
func (n *Node) NetworkChanges() uint64 { return n.netChanges.Load() }

// networkChanged is what the node does when the host's network changed.
func (n *Node) networkChanged() {
	n.netChanges.Add(1)
	n.observed.Store(nil)
	n.pathMu.RLock()
	for _, p := range n.paths {
		p.restart()
	}
	n.pathMu.RUnlock()
	n.net.mu.Lock()
	close(n.net.ch)
	n.net.ch = make(chan struct{})
	n.net.mu.Unlock()
}

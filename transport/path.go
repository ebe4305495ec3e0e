package transport

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// PathMode says which paths inner packets may take.
type PathMode int32

const (
	// PathAuto starts on the relay and moves to a direct path when one
	// answers, and back when it stops answering.
	PathAuto PathMode = iota
	// PathDirect never carries stream bytes over the relay: the relay only
	// carries the handshake and the candidate exchange; callers wait for a
	// direct path (WaitDirect) before opening streams.
	PathDirect
	// PathRelay never probes: everything crosses the relay.
	PathRelay
)

func (m PathMode) String() string {
	switch m {
	case PathAuto:
		return "auto"
	case PathDirect:
		return "direct"
	case PathRelay:
		return "relay"
	}
	return fmt.Sprintf("pathmode(%d)", int32(m))
}

// ParsePathMode parses auto, direct or relay.
func ParsePathMode(s string) (PathMode, error) {
	for _, m := range []PathMode{PathAuto, PathDirect, PathRelay} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("path mode %q: want auto, direct or relay", s)
}

// path is what a node knows about reaching one peer Endpoint directly.
type path struct {
	ep   Endpoint
	addr *net.UDPAddr

	mu       sync.Mutex
	secrets  [][]byte // one per live connection with this peer; newest last
	remote   []netip.AddrPort
	seen     []netip.AddrPort // addresses valid pings came from
	best     netip.AddrPort
	bestAt   time.Time
	bestRTT  time.Duration
	everBest atomic.Bool // read by send without the lock
	pending  map[uint64]sentPing
	wake     chan struct{}
	direct   chan struct{} // closed on the first confirmed direct path

	DirectIn, DirectOut atomic.Uint64
}

type sentPing struct {
	to   netip.AddrPort
	sent time.Time
}

func newPath(ep Endpoint, addr *net.UDPAddr) *path {
	return &path{ep: ep, addr: addr, pending: make(map[uint64]sentPing),
		wake: make(chan struct{}, 1), direct: make(chan struct{})}
}

// current returns the direct address to use now, if any.
func (p *path) current(now time.Time) (netip.AddrPort, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.best.IsValid() && now.Sub(p.bestAt) <= pathTrust {
		return p.best, true
	}
	return netip.AddrPort{}, false
}

func (p *path) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *path) secret() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.secrets) == 0 {
		return nil
	}
	return p.secrets[len(p.secrets)-1]
}

func (p *path) macOK(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.secrets {
		if discoMACOK(b, s) {
			return true
		}
	}
	return false
}

// targets are the addresses to probe: the peer's candidates and the
// addresses its pings came from.
func (p *path) targets() []netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := slices.Clone(p.remote)
	for _, a := range p.seen {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// pong records an answer; it reports whether the path became usable.
func (p *path) pong(txid uint64, from netip.AddrPort, now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	sp, ok := p.pending[txid]
	if !ok || sp.to != from {
		return false
	}
	delete(p.pending, txid)
	rtt := now.Sub(sp.sent)
	fresh := p.best.IsValid() && now.Sub(p.bestAt) <= pathTrust
	switch {
	case !fresh, from == p.best:
		p.best, p.bestRTT = from, rtt
	case rtt < p.bestRTT*8/10:
		// A clearly faster path (the same LAN) wins; small differences
		// do not make the path flap.
		p.best, p.bestRTT = from, rtt
	default:
		return false
	}
	p.bestAt = now
	if !p.everBest.Load() {
		p.everBest.Store(true)
		close(p.direct)
	}
	return !fresh
}

// sent records a ping to be sent now, so that its pong counts, and forgets
// the pings sent more than pingForget before now.
func (p *path) sent(txid uint64, to netip.AddrPort, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, sp := range p.pending {
		if now.Sub(sp.sent) > pingForget {
			delete(p.pending, id)
		}
	}
	p.pending[txid] = sentPing{to, now}
}

// PeerInfo describes one end-to-end connection, for `tunnel status`.
type PeerInfo struct {
	ID       identity.ID
	Endpoint Endpoint
	// Direct is the peer's address on the direct path in use; invalid when
	// the connection is relayed.
	Direct netip.AddrPort
	// Relay is the rendezvous node carrying it when it is not direct:
	// the node's own, or the peer's home node for a peer dialed after a
	// redirect.
	Relay    RelayRoute
	RTT      time.Duration
	Streams  int64
	BytesOut uint64
	BytesIn  uint64
}

// tracked is one live end-to-end connection of a node.
type tracked struct {
	id      identity.ID
	conn    *quic.Conn
	path    *path
	streams atomic.Int64
}

// track starts path discovery for a new end-to-end connection; it stops
// when the connection closes.
func (n *Node) track(c *quic.Conn, ep Endpoint) {
	id, _ := PeerConnID(c)
	cs := c.ConnectionState().TLS
	secret, err := cs.ExportKeyingMaterial(discoLabel, nil, 32)
	if err != nil {
		return
	}
	n.pathMu.Lock()
	p, ok := n.paths[ep]
	if !ok {
		p = newPath(ep, n.addr(ep))
		n.paths[ep] = p
	}
	t := &tracked{id: id, conn: c, path: p}
	n.conns[c] = t
	n.pathMu.Unlock()
	p.mu.Lock()
	p.secrets = append(p.secrets, secret)
	p.mu.Unlock()

	n.wg.Go(func() {
		n.runPath(c, p)
		n.pathMu.Lock()
		delete(n.conns, c)
		p.mu.Lock()
		p.secrets = slices.DeleteFunc(p.secrets, func(s []byte) bool { return &s[0] == &secret[0] })
		last := len(p.secrets) == 0
		p.mu.Unlock()
		if last && n.paths[ep] == p {
			delete(n.paths, ep)
			for a, q := range n.byAddr {
				if q == p {
					delete(n.byAddr, a)
				}
			}
		}
		n.pathMu.Unlock()
	})
}

// runPath exchanges candidates and probes until the connection closes.
func (n *Node) runPath(c *quic.Conn, p *path) {
	ctx := c.Context()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for {
			b, err := c.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			cands, err := parseCandidates(b)
			if err != nil {
				continue
			}
			p.mu.Lock()
			changed := !slices.Equal(p.remote, cands)
			p.remote = cands
			p.mu.Unlock()
			if changed {
				p.poke()
			}
		}
	})
	if n.Mode() == PathRelay {
		<-ctx.Done()
		return
	}
	var sentCands []netip.AddrPort
	var candsAt time.Time
	var pr prober
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.wake:
		}
		now := time.Now()
		// Tell the peer our candidates when they change, and now and then
		// in case a datagram was lost.
		if cands := n.candidates(); !slices.Equal(cands, sentCands) || now.Sub(candsAt) > candidatesEvery {
			if err := c.SendDatagram(appendCandidates(nil, cands)); err == nil {
				sentCands, candsAt = cands, now
			}
		}
		best, ok := p.current(now)
		all, wait := pr.next(now, ok)
		if all {
			for _, a := range p.targets() {
				n.ping(p, a)
			}
		} else {
			n.ping(p, best)
		}
		timer.Reset(wait)
	}
}

// prober is runPath's probing schedule, apart from the socket and the
// clock. The zero value is ready: nothing probed yet.
type prober struct {
	backoff  time.Duration // wait after the next unconfirmed round; 0 is probeFirst
	lastFull time.Time     // the last round to every target
}

// next is called at each wake-up of runPath, with the time and whether a
// direct path is confirmed then (path.current). It says whether to ping
// every target (all) or only the confirmed path's address, and how long to
// wait before the next call. A caller may rely on:
//
//   - the first call, and any call with confirmed false, is a round to
//     every target (for any now after the zero Time plus fullProbeEvery,
//     as time.Now always is);
//   - while confirmed, a call is a heartbeat to the best address unless
//     fullProbeEvery or more has passed since the last round to every
//     target, and the wait is pathHeartbeat either way;
//   - unconfirmed rounds wait probeFirst, then twice the previous wait,
//     up to probeInterval; confirmed rounds do not advance the backoff and
//     do not reset it, so after a confirmed path goes stale the backoff
//     resumes where it stopped.
func (s *prober) next(now time.Time, confirmed bool) (all bool, wait time.Duration) {
	if confirmed && now.Sub(s.lastFull) < fullProbeEvery {
		return false, pathHeartbeat
	}
	s.lastFull = now
	if confirmed {
		return true, pathHeartbeat
	}
	if s.backoff == 0 {
		s.backoff = probeFirst
	}
	wait = s.backoff
	s.backoff = min(s.backoff*2, probeInterval)
	return true, wait
}

func (n *Node) ping(p *path, to netip.AddrPort) {
	secret := p.secret()
	if secret == nil {
		return
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	txid := binary.BigEndian.Uint64(b[:])
	p.sent(txid, to, time.Now())
	msg := appendDisco(make([]byte, 0, discoLen), discoMsg{frameDiscoPing, n.endpoint, p.ep, txid}, secret)
	_ = n.sock.WriteTo(msg, to)
}

// receiveDisco handles a ping or pong that arrived on the socket.
func (n *Node) receiveDisco(b []byte, from netip.AddrPort) {
	m, ok := parseDisco(b)
	if !ok || m.dst != n.endpoint {
		return
	}
	n.pathMu.RLock()
	p := n.paths[m.src]
	n.pathMu.RUnlock()
	if p == nil || !p.macOK(b) {
		return
	}
	n.pathMu.Lock()
	n.byAddr[from] = p
	n.pathMu.Unlock()
	now := time.Now()
	switch m.typ {
	case frameDiscoPing:
		secret := p.secret()
		reply := appendDisco(make([]byte, 0, discoLen), discoMsg{frameDiscoPong, n.endpoint, m.src, m.txid}, secret)
		_ = n.sock.WriteTo(reply, from)
		p.mu.Lock()
		known := slices.Contains(p.seen, from)
		if !known {
			if len(p.seen) >= maxCandidates {
				p.seen = p.seen[1:]
			}
			p.seen = append(p.seen, from)
		}
		p.mu.Unlock()
		if !known {
			// The peer reached us from an address we may not have tried:
			// answer its ping with ours so the path is proved both ways.
			p.poke()
		}
	case frameDiscoPong:
		p.pong(m.txid, from, now)
	}
}

// candidates are this node's addresses a peer may reach it at: the public
// mapping its relay saw, and its interfaces' addresses with its port.
func (n *Node) candidates() []netip.AddrPort {
	var out []netip.AddrPort
	if o := n.observed.Load(); o != nil {
		out = append(out, *o)
	}
	local := n.sock.LocalAddr()
	add := func(a netip.AddrPort) {
		if !slices.Contains(out, a) && len(out) < maxCandidates {
			out = append(out, a)
		}
	}
	if !local.Addr().IsUnspecified() {
		add(local)
		return out
	}
	// A node whose relay is on loopback can only meet peers on this
	// machine: offer loopback, and nothing that would send probes onto a
	// network for nothing.
	home := n.routes.Load().home
	loopbackOnly := !home.IsZero() && home.Addr.Addr().IsLoopback()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return out
	}
	for _, ia := range addrs {
		ipn, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		a = a.Unmap()
		if a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() || a.IsLoopback() != loopbackOnly {
			continue
		}
		add(netip.AddrPortFrom(a, local.Port()))
	}
	return out
}

// SetObserved records the address the relay saw this node at.
func (n *Node) SetObserved(a netip.AddrPort) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	n.observed.Store(&a)
}

// Observed is the address the relay last saw this node at, if any.
func (n *Node) Observed() netip.AddrPort {
	if o := n.observed.Load(); o != nil {
		return *o
	}
	return netip.AddrPort{}
}

// WaitDirect waits until the connection to ep has a confirmed direct path.
func (n *Node) WaitDirect(ctx context.Context, ep Endpoint) error {
	n.pathMu.RLock()
	p := n.paths[ep]
	n.pathMu.RUnlock()
	if p == nil {
		return fmt.Errorf("%w: no connection to endpoint %s", ErrNoDirectPath, ep)
	}
	select {
	case <-p.direct:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%w to endpoint %s: %w", ErrNoDirectPath, ep, ctx.Err())
	}
}

// CountStreams adds delta to the open-stream count shown for c.
func (n *Node) CountStreams(c *quic.Conn, delta int64) {
	n.pathMu.RLock()
	t := n.conns[c]
	n.pathMu.RUnlock()
	if t != nil {
		t.streams.Add(delta)
	}
}

// Peers describes the node's live end-to-end connections.
func (n *Node) Peers() []PeerInfo {
	n.pathMu.RLock()
	ts := make([]*tracked, 0, len(n.conns))
	for _, t := range n.conns {
		ts = append(ts, t)
	}
	n.pathMu.RUnlock()
	rt := n.routes.Load()
	now := time.Now()
	out := make([]PeerInfo, 0, len(ts))
	for _, t := range ts {
		st := t.conn.ConnectionStats()
		info := PeerInfo{ID: t.id, Endpoint: t.path.ep, RTT: st.SmoothedRTT, Streams: t.streams.Load(),
			BytesOut: st.BytesSent, BytesIn: st.BytesReceived}
		if a, ok := t.path.current(now); ok && n.Mode() != PathRelay {
			info.Direct = a
		} else {
			info.Relay, _ = rt.relayFor(t.path.ep)
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return slices.Compare(a.ID[:], b.ID[:]) })
	return out
}

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
	keys     []*discoKey      // one per live connection with this peer; newest last
	remote   []netip.AddrPort // the peer's candidates, in scope
	seen     []netip.AddrPort // addresses fresh pings came from, in scope
	best     netip.AddrPort
	bestAt   time.Time
	bestRTT  time.Duration
	everBest atomic.Bool // read by send without the lock
	seq      uint64      // of the last ping sent
	pending  map[uint64]sentPing
	base     window // the liveness rule's window (judge)
	barred   map[netip.AddrPort]bar
	rotate   int  // where the next probe round starts in targets
	restarts bool // probing starts over at the next wake (restart)
	wake     chan struct{}
	direct   chan struct{} // closed on the first confirmed direct path

	// via: the peer addresses reached from a probe socket (hardnat.go).
	via map[netip.AddrPort]*Socket

	// What went over direct paths to and from the peer. The In counts
	// are what pongs report, the Out counts what they are compared with.
	DirectIn, DirectOut         atomic.Uint64 // payload bytes
	DirectInPkts, DirectOutPkts atomic.Uint64 // frames

	// What is known of the size of the direct path in use and of the
	// relay path (pathsize.go); guarded by mu.
	sizeDirect, sizeRelay sizeState

	// When a packet of the peer's last arrived on each path, by the
	// node's clock (0: never). Status shows the one of the path in use,
	// so that a path that says direct but carries nothing is visible.
	lastDirectRx, lastRelayRx atomic.Int64
}

// discoKey is one connection's disco secret, and what its peer may do
// with it. Fields other than secret are guarded by the path's lock.
type discoKey struct {
	secret     []byte
	authorized bool         // pings are sent and answered with it
	replay     replayWindow // seqs of the peer's pings accepted under it
}

type sentPing struct {
	to   netip.AddrPort
	sent time.Time
	txid uint64 // the pong must echo it
	out  counts // sent direct to the peer before this ping
}

// window is where the liveness rule's current window starts: the ping of
// the last good pong, what had been sent direct by then, and what the
// peer had received.
type window struct {
	at  time.Time
	out counts
	in  counts
}

// windowAt is the window that starts at the ping sp, whose pong said the
// peer had received rcvd.
func windowAt(sp sentPing, rcvd counts) window { return window{at: sp.sent, out: sp.out, in: rcvd} }

// bar keeps an address that was judged dead from carrying the path.
type bar struct {
	until time.Time
	hold  time.Duration
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

// restart drops the direct path in use, so that packets take the relay
// until a pong proves a path again, and has probing start over from its
// first, fastest round: the network under the path changed (netmon.go).
func (p *path) restart() {
	p.mu.Lock()
	p.best, p.bestAt, p.bestRTT = netip.AddrPort{}, time.Time{}, 0
	p.restarts = true
	p.mu.Unlock()
	p.poke()
}

// takeRestart reports whether restart was called since the last call.
func (p *path) takeRestart() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.restarts
	p.restarts = false
	return r
}

func (p *path) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// sentCounts is what went to the peer over direct paths so far.
func (p *path) sentCounts() counts {
	return counts{p.DirectOut.Load(), p.DirectOutPkts.Load()}
}

// receivedCounts is what came from the peer over direct paths so far.
func (p *path) receivedCounts() counts {
	return counts{p.DirectIn.Load(), p.DirectInPkts.Load()}
}

// targets are the addresses a probe round may ping: the addresses the
// peer's pings came from (they reached us, so they are the likeliest),
// then its candidates, without those barred at now; IPv6 and IPv4
// interleaved, so that every round tries both (family.go).
func (p *path) targets(now time.Time) []netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]netip.AddrPort, 0, len(p.seen)+len(p.remote))
	for _, l := range [][]netip.AddrPort{p.seen, p.remote} {
		for _, a := range l {
			if !slices.Contains(out, a) && !p.isBarred(a, now) {
				out = append(out, a)
			}
		}
	}
	return interleaveFamilies(out)
}

// round returns the targets of the next probe round: at most
// maxPingsPerRound, starting where the last round stopped. done says how
// many of them were pinged, so that the next round starts after them.
func (p *path) round(now time.Time) (to []netip.AddrPort, done func(pinged int)) {
	ts := p.targets(now)
	n := len(ts)
	if n == 0 {
		return nil, func(int) {}
	}
	p.mu.Lock()
	start := p.rotate % n
	p.mu.Unlock()
	ts = append(ts[start:], ts[:start]...)
	return ts[:min(n, maxPingsPerRound)], func(pinged int) {
		p.mu.Lock()
		p.rotate = (start + pinged) % n
		p.mu.Unlock()
	}
}

// sent records a ping to to at now, with a new seq and a random txid, so
// that its pong counts; it returns the ping to send and the secret to MAC
// it with, or false if no authorized connection is left. It forgets the
// pings sent more than pingForget before now.
func (p *path) sent(to netip.AddrPort, now time.Time) (discoMsg, []byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var key *discoKey
	for _, k := range slices.Backward(p.keys) {
		if k.authorized {
			key = k
			break
		}
	}
	if key == nil {
		return discoMsg{}, nil, false
	}
	for seq, sp := range p.pending {
		if now.Sub(sp.sent) > pingForget {
			delete(p.pending, seq)
		}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	p.seq++
	m := discoMsg{typ: frameDiscoPing, dst: p.ep, seq: p.seq, txid: binary.BigEndian.Uint64(b[:])}
	p.pending[m.seq] = sentPing{to: to, sent: now, txid: m.txid, out: p.sentCounts()}
	return m, key.secret, true
}

// pinged handles a ping whose header is m and whose bytes are b, from from:
// if it is fresh and MACed with the secret of an authorized connection, it
// remembers from as an address of the peer and returns that secret, for
// the pong, and whether from is new.
func (p *path) pinged(b []byte, m discoMsg, from netip.AddrPort) (secret []byte, newAddr bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k := p.keyFor(b)
	if k == nil || !k.replay.accept(m.seq) {
		return nil, false
	}
	if slices.Contains(p.seen, from) {
		return k.secret, false
	}
	if len(p.seen) >= maxCandidates {
		p.seen = p.seen[1:]
	}
	p.seen = append(p.seen, from)
	return k.secret, true
}

// keyFor returns the key of the authorized connection whose secret MACed
// b, or nil. p.mu is held.
func (p *path) keyFor(b []byte) *discoKey {
	for _, k := range p.keys {
		if k.authorized && frameMACValid(b, k.secret) {
			return k
		}
	}
	return nil
}

// macOK reports whether b is MACed with the secret of an authorized
// connection.
func (p *path) macOK(b []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keyFor(b) != nil
}

// pongOutcome is what a pong did.
type pongOutcome struct {
	matched   bool // it answered an outstanding ping, from where that ping went
	confirmed bool // the path became usable
	dead      bool // the liveness rule judged the path in use dead
}

// pong handles an answer to ping seq with txid, from from at now, saying
// the peer received rcvd over direct paths.
func (p *path) pong(seq, txid uint64, rcvd counts, from netip.AddrPort, now time.Time) pongOutcome {
	p.mu.Lock()
	defer p.mu.Unlock()
	sp, ok := p.pending[seq]
	if !ok || sp.to != from || sp.txid != txid {
		return pongOutcome{}
	}
	delete(p.pending, seq)
	out := pongOutcome{matched: true}
	rtt := now.Sub(sp.sent)
	fresh := p.best.IsValid() && now.Sub(p.bestAt) <= pathTrust
	if fresh && p.judge(sp, rcvd) {
		p.barLocked(p.best, now)
		p.best, p.bestAt, p.bestRTT = netip.AddrPort{}, time.Time{}, 0
		fresh, out.dead = false, true
	}
	if p.isBarred(from, now) {
		return out
	}
	switch {
	case !fresh, from == p.best:
		p.best, p.bestRTT = from, rtt
	case betterPath(from, rtt, p.best, p.bestRTT):
		// A clearly faster path (the same LAN), or an IPv6 one about as
		// fast as IPv4 (family.go), wins; small differences do not make
		// the path flap.
		p.best, p.bestRTT = from, rtt
	default:
		return out
	}
	p.bestAt = now
	if !fresh {
		// A new window for the new path: what went before it was relayed,
		// or went to an address now left.
		p.base = windowAt(sp, rcvd)
		out.confirmed = true
	}
	if !p.everBest.Load() {
		p.everBest.Store(true)
		close(p.direct)
	}
	return out
}

// judge applies the liveness rule (disco.go) to a pong for sp that says
// the peer received rcvd; it reports whether the path in use is dead.
func (p *path) judge(sp sentPing, rcvd counts) bool {
	// p.base is set: the path in use was confirmed by a pong, which set it.
	b := &p.base
	if rcvd.bytes < b.in.bytes || rcvd.pkts < b.in.pkts {
		// The peer's counts started again (its path state for us was
		// new): so does the window.
		*b = windowAt(sp, rcvd)
		return false
	}
	if sp.sent.Before(b.at) || sp.out.bytes < b.out.bytes || sp.out.pkts < b.out.pkts {
		return false // the pong of a ping older than the window
	}
	sent := counts{sp.out.bytes - b.out.bytes, sp.out.pkts - b.out.pkts}
	got := counts{rcvd.bytes - b.in.bytes, rcvd.pkts - b.in.pkts}
	if got.bytes >= sent.bytes-sent.bytes/2 {
		*b = windowAt(sp, rcvd)
		return false
	}
	if sp.sent.Sub(b.at) < pathHeartbeat {
		return false
	}
	missingPkts := sent.pkts - min(got.pkts, sent.pkts)
	return missingPkts >= deadPackets || sent.bytes-got.bytes >= deadBytes
}

// barLocked bars address a, judged dead at now, from carrying the path for
// deadHold, or twice its last hold if it died again within deadHoldMax of
// that hold's end.
func (p *path) barLocked(a netip.AddrPort, now time.Time) {
	if p.barred == nil {
		p.barred = make(map[netip.AddrPort]bar)
	}
	hold := deadHold
	if prev, ok := p.barred[a]; ok && now.Sub(prev.until) < deadHoldMax {
		hold = min(prev.hold*2, deadHoldMax)
	}
	if _, ok := p.barred[a]; !ok && len(p.barred) >= maxBarred {
		// Forget the address whose bar ends first.
		var first netip.AddrPort
		for b, e := range p.barred {
			if !first.IsValid() || e.until.Before(p.barred[first].until) {
				first = b
			}
		}
		delete(p.barred, first)
	}
	p.barred[a] = bar{until: now.Add(hold), hold: hold}
}

func (p *path) isBarred(a netip.AddrPort, now time.Time) bool {
	b, ok := p.barred[a]
	return ok && now.Before(b.until)
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
	// SinceRx is how long ago a packet of the peer last arrived on the
	// path in use (Direct or Relay); -1 if none ever did.
	SinceRx time.Duration
	// Packets is how the path in use carries packets (pathsize.go):
	// "whole", "fragments", "probing" (no answer yet) or "unprobed" (the
	// peer answers no probe: a node from before packet sizing).
	Packets string
	// PacketsSent is how many packets of this connection quic-go sent,
	// and PacketsLost how many of them it declared lost (then sent their
	// data again). On a path that loses nothing (loopback, a LAN) losses
	// mean a receiver that dropped what it could not take in time.
	PacketsSent, PacketsLost uint64
}

// tracked is one live end-to-end connection of a node.
type tracked struct {
	id      identity.ID
	conn    *quic.Conn
	path    *path
	key     *discoKey
	streams atomic.Int64

	authOnce sync.Once
	auth     chan struct{} // closed once the connection is authorized
}

// authorize lets the connection take part in path discovery (Authorized).
func (t *tracked) authorize() {
	t.authOnce.Do(func() {
		t.path.mu.Lock()
		t.key.authorized = true
		t.path.mu.Unlock()
		close(t.auth)
	})
}

// track starts path discovery for a new end-to-end connection: at once for
// a connection this node dialed, once Authorized for one it accepted. It
// stops when the connection closes.
func (n *Node) track(c *quic.Conn, ep Endpoint, dialed bool) {
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
	t := &tracked{id: id, conn: c, path: p, key: &discoKey{secret: secret}, auth: make(chan struct{})}
	n.conns[c] = t
	n.pathMu.Unlock()
	n.innerPC.credit.add(ep, c)
	p.mu.Lock()
	p.keys = append(p.keys, t.key)
	p.mu.Unlock()
	if dialed {
		t.authorize()
	}

	n.wg.Go(func() {
		n.runPath(c, t)
		n.innerPC.credit.remove(ep, c)
		n.pathMu.Lock()
		delete(n.conns, c)
		p.mu.Lock()
		p.keys = slices.DeleteFunc(p.keys, func(k *discoKey) bool { return k == t.key })
		last := len(p.keys) == 0
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

// Authorized tells the node that the peer of c, a connection its
// PeerListener accepted, passed a policy: discovery of a direct path to it
// starts (candidates sent, pings sent and answered). Until then the peer
// gets nothing from this node but QUIC. Call it when the first stream of c
// is allowed in, or at once when the peer's key alone is enough. Calling
// it again, on a connection this node dialed (those start at once), or
// after c closed does nothing.
func (n *Node) Authorized(c *quic.Conn) {
	n.pathMu.RLock()
	t := n.conns[c]
	n.pathMu.RUnlock()
	if t != nil {
		t.authorize()
	}
}

// runPath takes in the peer's candidates from the start, and once the
// connection is authorized exchanges candidates and probes, until the
// connection closes.
func (n *Node) runPath(c *quic.Conn, t *tracked) {
	p := t.path
	ctx := c.Context()
	var wg sync.WaitGroup
	defer wg.Wait()
	hn := newHardNAT()
	defer hn.close(p)
	wg.Go(func() {
		for {
			b, err := c.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			if len(b) > 0 && b[0] != msgCandidates {
				hn.received(b, p) // acted on only once authorized (runPath's loop)
				continue
			}
			cands, err := parseCandidates(b)
			if err != nil {
				continue
			}
			// Kept, and pinged once the connection is authorized, only
			// if this node could reach them anyway (disco.go, "Scope").
			cands = n.scope().admitted(cands)
			p.mu.Lock()
			changed := !slices.Equal(p.remote, cands)
			// The peer no longer offers the address our direct path
			// runs to: it moved (netmon.go), and its new NAT will not
			// let that path through. Probe again now rather than wait
			// for the pongs to stop.
			left := p.best.IsValid() && slices.Contains(p.remote, p.best) && !slices.Contains(cands, p.best)
			p.remote = cands
			p.mu.Unlock()
			switch {
			case left:
				p.restart()
			case changed:
				p.poke()
			}
		}
	})
	if n.Mode() == PathRelay {
		<-ctx.Done()
		return
	}
	select {
	case <-ctx.Done():
		return
	case <-t.auth:
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
		if p.takeRestart() {
			pr = prober{}
		}
		now := time.Now()
		// Tell the peer our candidates when they change, and now and then
		// in case a datagram was lost.
		if cands := n.candidates(); !slices.Equal(cands, sentCands) || now.Sub(candsAt) > candidatesEvery {
			if err := c.SendDatagram(appendCandidates(nil, cands)); err == nil {
				sentCands, candsAt = cands, now
				_ = c.SendDatagram(n.natReport())
			}
		}
		best, ok := p.current(now)
		all, wait := pr.next(now, ok)
		if all {
			n.probe(p, now)
		} else {
			n.ping(p, best, now) // a heartbeat: to the peer itself, outside the budget
		}
		if !ok {
			if d := n.hardStep(ctx, c, p, hn, &wg, now); d > 0 {
				wait = min(wait, d)
			}
		}
		timer.Reset(wait)
	}
}

// probe pings the targets of p's next round, as far as the node's budget
// allows.
func (n *Node) probe(p *path, now time.Time) {
	to, done := p.round(now)
	local := n.sock.LocalAddr().Addr()
	pinged := 0
	for _, a := range to {
		if !sendsTo(local, a.Addr()) {
			pinged++ // passed over, at no cost to the budget
			continue
		}
		if !n.probes.AllowN(now, 1) {
			n.probesDeferred.Add(1)
			break
		}
		n.ping(p, a, now)
		pinged++
	}
	done(pinged)
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

// ping sends one ping to p's peer at to.
func (n *Node) ping(p *path, to netip.AddrPort, now time.Time) {
	m, secret, ok := p.sent(to, now)
	if !ok {
		return
	}
	m.src = n.endpoint
	_ = n.sockTo(p, to).WriteTo(appendDisco(make([]byte, 0, discoLen), m, secret), to)
}

// receiveDisco handles a ping or pong that arrived on via (a probe socket,
// or the node's socket when nil): answers go back on it, and so does
// whatever the path later sends to from.
func (n *Node) receiveDisco(b []byte, from netip.AddrPort, via *Socket) {
	m, ok := parseDisco(b)
	if !ok || m.dst != n.endpoint {
		return
	}
	n.pathMu.RLock()
	p := n.paths[m.src]
	n.pathMu.RUnlock()
	if p == nil {
		return
	}
	now := time.Now()
	switch m.typ {
	case frameDiscoPing:
		if !n.scope().admits(from.Addr()) {
			return
		}
		secret, newAddr := p.pinged(b, m, from)
		if secret == nil {
			return // not fresh, not authorized, or not the peer's
		}
		n.pathMu.Lock()
		n.byAddr[from] = p
		n.pathMu.Unlock()
		p.setVia(from, via)
		if via == nil {
			via = n.sock
		}
		reply := discoMsg{typ: frameDiscoPong, src: n.endpoint, dst: m.src, seq: m.seq, txid: m.txid, rcvd: p.receivedCounts()}
		_ = via.WriteTo(appendDisco(make([]byte, 0, discoLen), reply, secret), from)
		if newAddr {
			// The peer reached us from an address we may not have tried:
			// answer its ping with ours so the path is proved both ways.
			p.poke()
		}
	case frameDiscoPong:
		if !p.macOK(b) {
			return
		}
		out := p.pong(m.seq, m.txid, m.rcvd, from, now)
		if !out.matched {
			return
		}
		n.pathMu.Lock()
		n.byAddr[from] = p
		n.pathMu.Unlock()
		p.setVia(from, via)
		if out.dead {
			p.poke() // back to rounds to every target, now
		}
	}
}

// candidates are this node's addresses a peer may reach it at: the public
// mapping its relay saw, the one its router granted, and its interfaces'
// addresses with its port.
func (n *Node) candidates() []netip.AddrPort {
	if n.testCandidates != nil {
		return n.testCandidates()
	}
	var out []netip.AddrPort
	if o := n.observed.Load(); o != nil {
		out = append(out, *o)
	}
	if m := n.mapped.Load(); m != nil && !slices.Contains(out, *m) {
		out = append(out, *m) // the router's mapping (mapping.go)
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
	lo := n.loopbackScoped()
	for _, a := range interfaceCandidates(*n.interfaceAddrs(), local.Port(), lo, !lo || n.relayServesBeyondLoopback()) {
		add(a)
	}
	return out
}

// interfaceCandidates are the interface addresses (as net.InterfaceAddrs
// gives them) a node offers with its socket's port: loopback ones if
// loopback, the others if beyond. A node whose relay is on loopback meets
// peers on this machine, so it offers loopback; unless its relay also
// serves other machines (localrelay.go), nothing else, which would send
// its peers' probes onto a network for nothing. Link-local addresses are
// never offered (scope.admits).
func interfaceCandidates(ifaddrs []net.Addr, port uint16, loopback, beyond bool) []netip.AddrPort {
	var out []netip.AddrPort
	for _, p := range interfacePrefixes(ifaddrs) {
		a := p.Addr()
		if a.IsLinkLocalUnicast() || a.IsMulticast() || a.IsUnspecified() ||
			a.IsLoopback() && !loopback || !a.IsLoopback() && !beyond {
			continue
		}
		out = append(out, netip.AddrPortFrom(a, port))
	}
	return out
}

// interfaceAddrs is the node's last reading of its interface addresses
// (Node.ifaces); before the monitor's first, it reads them itself.
func (n *Node) interfaceAddrs() *[]net.Addr {
	if a := n.ifaces.Load(); a != nil {
		return a
	}
	return n.readInterfaces()
}

// readInterfaces reads the interface addresses into Node.ifaces and
// returns them; a failed read leaves none (no interface candidates, and
// private ranges out of scope), as the next reading may not.
func (n *Node) readInterfaces() *[]net.Addr {
	addrs, _ := net.InterfaceAddrs()
	n.ifaces.Store(&addrs)
	return &addrs
}

// loopbackScoped reports whether the node's relay is on loopback: then it
// meets only peers on this machine.
func (n *Node) loopbackScoped() bool {
	home := n.routes.Load().home
	return !home.IsZero() && home.Addr.Addr().IsLoopback()
}

// scope is the node's scope (disco.go, "Scope"), computed again only
// when the monitor has read the interfaces again.
func (n *Node) scope() scope {
	lo := n.loopbackScoped()
	addrs := n.interfaceAddrs()
	n.scopeMu.Lock()
	defer n.scopeMu.Unlock()
	if n.scopeOf != addrs {
		n.scopeView, n.scopeOf = newScope(lo, *addrs), addrs
	}
	s := n.scopeView
	s.loopback = lo
	return s
}

// SetObserved records the address the relay saw this node at.
func (n *Node) SetObserved(a netip.AddrPort) {
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	if old := n.observed.Swap(&a); old == nil || *old != a {
		// A new public address (after a network change): peers hear of
		// it now, not at the next probe round.
		n.pathMu.RLock()
		for _, p := range n.paths {
			p.poke()
		}
		n.pathMu.RUnlock()
	}
}

// Observed is the address the relay last saw this node at, if any.
func (n *Node) Observed() netip.AddrPort {
	if o := n.observed.Load(); o != nil {
		return *o
	}
	return netip.AddrPort{}
}

// WaitDirect waits until the connection to ep has a confirmed direct path.
// On a connection the peer dialed, that takes Authorized first.
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
	now, clock := time.Now(), n.clock()
	out := make([]PeerInfo, 0, len(ts))
	for _, t := range ts {
		out = append(out, n.info(t, rt, now, clock))
	}
	slices.SortFunc(out, func(a, b PeerInfo) int { return slices.Compare(a.ID[:], b.ID[:]) })
	return out
}

// ProbesDeferred counts the probe rounds cut short by the node's probe
// budget (disco.go), for metrics.
func (n *Node) ProbesDeferred() uint64 { return n.probesDeferred.Load() }

// PathCounts returns how many of the node's live end-to-end connections
// are on a direct path and how many are relayed, as Peers would say, at
// the cost of a lock per connection and no allocation per connection: what
// a metrics scrape asks.
func (n *Node) PathCounts() (direct, relayed int) {
	now, relayOnly := time.Now(), n.Mode() == PathRelay
	n.pathMu.RLock()
	defer n.pathMu.RUnlock()
	for _, t := range n.conns {
		if _, ok := t.path.current(now); ok && !relayOnly {
			direct++
		} else {
			relayed++
		}
	}
	return direct, relayed
}

// PeerInfo describes one end-to-end connection of the node, as Peers
// does; false if c is not one (any more).
func (n *Node) PeerInfo(c *quic.Conn) (PeerInfo, bool) {
	n.pathMu.RLock()
	t := n.conns[c]
	n.pathMu.RUnlock()
	if t == nil {
		return PeerInfo{}, false
	}
	return n.info(t, n.routes.Load(), time.Now(), n.clock()), true
}

// info is what Peers and PeerInfo say of t at now (clock: n.clock() then).
func (n *Node) info(t *tracked, rt *routes, now time.Time, clock int64) PeerInfo {
	st := t.conn.ConnectionStats()
	info := PeerInfo{ID: t.id, Endpoint: t.path.ep, RTT: st.SmoothedRTT, Streams: t.streams.Load(),
		BytesOut: st.BytesSent, BytesIn: st.BytesReceived, PacketsSent: st.PacketsSent, PacketsLost: st.PacketsLost}
	last := &t.path.lastRelayRx
	if a, ok := t.path.current(now); ok && n.Mode() != PathRelay {
		info.Direct = a
		last = &t.path.lastDirectRx
		info.Packets = t.path.packets(&t.path.sizeDirect, a)
	} else {
		info.Relay, _ = rt.relayFor(t.path.ep)
		info.Packets = t.path.packets(&t.path.sizeRelay, info.Relay.Addr)
	}
	info.SinceRx = -1
	if at := last.Load(); at != 0 {
		info.SinceRx = max(time.Duration(clock-at), 0)
	}
	return info
}

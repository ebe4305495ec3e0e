package transport

// Hard NATs: a direct path when one side's NAT maps per destination.
//
// Ordinary discovery (disco.go) punches through NATs that keep one public
// mapping for a socket whatever the destination ("easy"). A NAT that picks
// a new public port for every destination ("hard": symmetric, most mobile
// carriers, many corporate networks) makes the address the relay saw
// useless to the peer, and the path stays relayed. When exactly one side is
// hard, the two meet by the birthday paradox:
//
//   - the hard side opens hardSockets extra UDP sockets and sends one ping
//     from each to the easy side's public address: hardSockets new
//     mappings on its NAT, each open to exactly that address (the pings
//     themselves are dropped by the easy side's NAT, which has not sent to
//     them);
//   - then it tells the easy side to go, and the easy side sends
//     sprayCount pings from its one socket to distinct ports of the hard
//     side's public IP: first the ports next to the one its relay saw
//     (port prediction, for NATs that allocate in sequence), then random
//     ones. Its NAT keeps one mapping for all of them, so any ping that
//     lands on one of the hard side's mappings gets through, and the pong
//     comes back on that mapping.
//
// With hardSockets = 256 mappings among the 64512 ports above 1023, one
// random ping hits with probability 1/252; sprayCount = 1024 pings miss all
// of them with probability (1-256/64512)^1024 ≈ 1.7 %.
//
// The winning mapping belongs to one of the extra sockets, so that socket
// stays open for as long as the connection lives and carries the path:
// a path remembers, per peer address, the socket a validated ping or pong
// of the peer arrived on (path.via), and pings, pongs and direct frames to
// that address leave from it (path.sockFor). Everything else — liveness,
// heartbeats, the switch back to the relay — is the ordinary path
// machinery. The other extra sockets close hardHold after they opened.
//
// Which side is hard: each side sends the peer, over the end-to-end
// connection, the public address its relay saw it at and whether that
// mapping kept its socket's port (natReport). A NAT that keeps the port
// (Linux MASQUERADE when the port is free, most home routers) maps one
// socket to one public address; one that changed it (MASQUERADE
// --random-fully, carrier-grade NATs) very likely maps per destination.
// This is one observation of our own mapping, not two: a NAT that keeps
// the port for the first destination and not for later ones is taken as
// easy, and then neither side starts an attempt (the path stays relayed, as
// before). The roles need both reports; two hard sides do nothing here
// (see transport/portmap for the router's help).
//
// Strangers and the budget. Reports and goes arrive over the authenticated
// end-to-end connection and are acted on only once it is authorized (as
// all discovery, disco.go); pings are MACed as all pings, so a stranger on
// the path can neither trigger nor steer an attempt. The addresses come
// from the peer, but are used only if they are among its candidates this
// node's scope admits: the peer can aim at nothing the ordinary probes
// would not. Per connection, an attempt in either role at most every
// hardEvery; per node, at most one attempt as the hard side at a time (at
// most hardSockets extra sockets open, plus one kept per connection that
// won), and one budget of hardBudget pings a minute (burst hardBurst) for
// both roles together, outside the ordinary probe budget: an attempt that
// does not fit is not started. At 65 bytes a ping, a spray is 66 kB.
//
// The messages (QUIC datagrams on the end-to-end connection, beside
// candidates, disco.go):
//
//	natReport
//	  type     uint8    0x02
//	  kind     uint8    0 unknown, 1 mapping keeps the port, 2 it does not
//	  family   uint8    0 (no address follows), 4 or 6
//	  addr     [4 or 16]byte  the public address the relay saw
//	  port     uint16
//
//	hardGo: the hard side's extra sockets have sent; spray now
//	  type     uint8    0x03

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/time/rate"
)

const (
	msgNATReport = 0x02
	msgHardGo    = 0x03
)

// The hard-NAT budget (see above).
const (
	hardSockets = 256
	sprayCount  = 1024
	// sprayPredict is how many ports on each side of the peer's observed
	// port are tried first.
	sprayPredict = 16
	// sprayBatch pings leave back to back, then the spray pauses
	// sprayPause: 1024 pings take about 80 ms, gentle on both NATs.
	sprayBatch = 64
	sprayPause = 5 * time.Millisecond
	// hardAfter is how long ordinary punching gets before an attempt.
	hardAfter = time.Second
	// hardHold is how long the extra sockets wait for the easy side's
	// spray to come through.
	hardHold = 3 * time.Second
	// hardEvery spaces a connection's attempts.
	hardEvery = 30 * time.Second
	// hardBudget pings a minute per node, bursts of hardBurst: two sprays
	// or eight socket rounds at once, then one ping every 30 ms.
	hardBudget = 2048
	hardBurst  = 2048
)

type natKind uint8

const (
	natUnknown natKind = iota
	natKeepsPort
	natRemaps
)

// hardBudgets is a node's share of the limits above.
type hardBudgets struct {
	pings *rate.Limiter
	busy  atomic.Bool // an attempt as the hard side has its sockets open
}

func newHardBudgets() *hardBudgets {
	return &hardBudgets{pings: rate.NewLimiter(rate.Limit(float64(hardBudget)/60), hardBurst)}
}

// natKind is what this node can tell of its own NAT from its relay's view.
func (n *Node) natKind() natKind {
	o := n.Observed()
	switch {
	case !o.IsValid():
		return natUnknown
	case o.Port() == n.sock.LocalAddr().Port():
		return natKeepsPort
	}
	return natRemaps
}

// natReport is this node's natReport message.
func (n *Node) natReport() []byte { return appendNATReport(nil, n.natKind(), n.Observed()) }

func appendNATReport(b []byte, kind natKind, observed netip.AddrPort) []byte {
	b = append(b, msgNATReport, byte(kind))
	if !observed.IsValid() {
		return append(b, 0)
	}
	if a := observed.Addr().Unmap(); a.Is4() {
		v := a.As4()
		b = append(append(b, 4), v[:]...)
	} else {
		v := a.As16()
		b = append(append(b, 6), v[:]...)
	}
	return binary.BigEndian.AppendUint16(b, observed.Port())
}

var errBadNATReport = errors.New("malformed nat report")

func parseNATReport(b []byte) (natKind, netip.AddrPort, error) {
	if len(b) < 3 || b[0] != msgNATReport || b[1] > byte(natRemaps) {
		return 0, netip.AddrPort{}, errBadNATReport
	}
	kind := natKind(b[1])
	var a netip.Addr
	switch rest := b[3:]; {
	case b[2] == 0 && len(rest) == 0:
		return kind, netip.AddrPort{}, nil
	case b[2] == 4 && len(rest) == 4+2:
		a = netip.AddrFrom4([4]byte(rest))
	case b[2] == 6 && len(rest) == 16+2:
		a = netip.AddrFrom16([16]byte(rest)).Unmap()
	default:
		return 0, netip.AddrPort{}, errBadNATReport
	}
	port := binary.BigEndian.Uint16(b[len(b)-2:])
	if port == 0 {
		return 0, netip.AddrPort{}, errBadNATReport
	}
	return kind, netip.AddrPortFrom(a, port), nil
}

// hardNAT is one connection's hard-NAT state, owned by its runPath.
type hardNAT struct {
	mu       sync.Mutex
	peerKind natKind
	peerAddr netip.AddrPort // the peer's public mapping, as its relay saw it
	peerGo   bool           // the peer said go, not yet acted on

	// Read and written by runPath's loop only.
	start time.Time // of the first step
	last  time.Time // of the last attempt, either role
	socks []*Socket // the extra sockets of the attempt under way, or the kept winners
	open  bool      // socks are an attempt under way (its hold not over)
}

func newHardNAT() *hardNAT { return &hardNAT{} }

// received takes a datagram of the peer other than candidates; the loop
// acts on it once the connection is authorized.
func (h *hardNAT) received(b []byte, p *path) {
	switch b[0] {
	case msgNATReport:
		kind, addr, err := parseNATReport(b)
		if err != nil {
			return
		}
		h.mu.Lock()
		h.peerKind, h.peerAddr = kind, addr
		h.mu.Unlock()
	case msgHardGo:
		if len(b) != 1 {
			return
		}
		h.mu.Lock()
		h.peerGo = true
		h.mu.Unlock()
	default:
		return
	}
	p.poke()
}

// close closes the extra sockets left when the connection ends.
func (h *hardNAT) close(p *path) {
	h.mu.Lock()
	socks := h.socks
	h.socks = nil
	h.mu.Unlock()
	for _, s := range socks {
		p.dropVia(s)
		s.Close()
	}
}

// hardStep runs at each wake-up of runPath while no direct path is
// confirmed: it starts an attempt in this node's role when one is due. It
// returns how soon it wants the next wake-up (0: no preference).
func (n *Node) hardStep(ctx context.Context, c *quic.Conn, p *path, h *hardNAT, wg *sync.WaitGroup, now time.Time) time.Duration {
	if h.start.IsZero() {
		h.start = now
	}
	h.mu.Lock()
	peerKind, peerAddr, peerGo := h.peerKind, h.peerAddr, h.peerGo
	h.peerGo = false
	h.mu.Unlock()
	if !peerAddr.IsValid() || !n.scope().admits(peerAddr.Addr()) || !p.isCandidateIP(peerAddr.Addr()) {
		return 0
	}
	due := h.last.IsZero() || now.Sub(h.last) >= hardEvery
	switch mine := n.natKind(); {
	case mine == natKeepsPort && peerKind == natRemaps:
		if peerGo && due && n.hard.pings.AllowN(now, sprayCount) {
			h.last = now
			wg.Go(func() { n.spray(ctx, p, peerAddr, sprayPorts(peerAddr.Port(), sprayCount, rand.Uint32)) })
		}
	case mine == natRemaps && peerKind == natKeepsPort:
		if wait := hardAfter - now.Sub(h.start); wait > 0 {
			return wait
		}
		h.mu.Lock()
		open := h.open
		h.mu.Unlock()
		if open {
			return 0
		}
		if !due {
			return hardEvery - now.Sub(h.last)
		}
		if !n.hard.busy.CompareAndSwap(false, true) {
			return probeInterval // another connection's attempt; try again later
		}
		if !n.hard.pings.AllowN(now, hardSockets) {
			n.hard.busy.Store(false)
			return probeInterval
		}
		h.last = now
		n.openHard(ctx, c, p, h, wg, peerAddr)
	}
	return 0
}

// openHard is the hard side of an attempt: hardSockets extra sockets, one
// ping from each to the easy side's public address to, then the go.
func (n *Node) openHard(ctx context.Context, c *quic.Conn, p *path, h *hardNAT, wg *sync.WaitGroup, to netip.AddrPort) {
	h.close(p) // a winner of an earlier attempt whose path died
	network := "udp4"
	if to.Addr().Is6() {
		network = "udp6"
	}
	socks := make([]*Socket, 0, hardSockets)
	for range hardSockets {
		s, err := n.listenProbe(network)
		if err != nil {
			break // out of ports or descriptors: try with what we have
		}
		socks = append(socks, s)
		n.pingVia(p, to, s, time.Now())
	}
	h.mu.Lock()
	h.socks, h.open = socks, true
	h.mu.Unlock()
	_ = c.SendDatagram([]byte{msgHardGo})
	wg.Go(func() {
		t := time.NewTimer(hardHold)
		defer t.Stop()
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		// Keep the sockets a validated ping or pong of the peer arrived
		// on; close the others.
		h.mu.Lock()
		var keep, drop []*Socket
		for _, s := range h.socks {
			if p.usesSocket(s) {
				keep = append(keep, s)
			} else {
				drop = append(drop, s)
			}
		}
		h.socks, h.open = keep, false
		h.mu.Unlock()
		for _, s := range drop {
			p.dropVia(s)
			s.Close()
		}
		n.hard.busy.Store(false)
	})
}

// listenProbe opens an extra socket whose frames the node takes as it
// takes those of its own socket, for direct paths only.
func (n *Node) listenProbe(network string) (*Socket, error) {
	var self atomic.Pointer[Socket]
	s, err := listenProbeSocket(network, func(run []byte, seg int, from netip.AddrPort) {
		via := self.Load()
		if via == nil {
			return // not ours yet: nothing was sent from it
		}
		n.receiveRun(run, seg, from, via, nil)
	})
	if err != nil {
		return nil, err
	}
	self.Store(s)
	return s, nil
}

// spray is the easy side of an attempt: a ping from the node's socket to
// each port of the peer's public IP, in batches.
func (n *Node) spray(ctx context.Context, p *path, peer netip.AddrPort, ports []uint16) {
	for i, port := range ports {
		if i > 0 && i%sprayBatch == 0 {
			t := time.NewTimer(sprayPause)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		n.pingVia(p, netip.AddrPortFrom(peer.Addr(), port), n.sock, time.Now())
	}
}

// sprayPorts returns count distinct ports to spray at a peer whose relay
// saw it at port observed: the sprayPredict ports on each side of it
// first, nearest first, then random ones (from rnd) above 1023, where NATs
// allocate. The observed port itself is left out: it is the mapping toward
// the relay, which ordinary probing pings anyway.
func sprayPorts(observed uint16, count int, rnd func() uint32) []uint16 {
	count = min(count, 65535-1024)
	out := make([]uint16, 0, count)
	seen := make(map[uint16]bool, count+1)
	seen[observed] = true
	add := func(p int) {
		if p >= 1 && p <= 65535 && !seen[uint16(p)] && len(out) < count {
			seen[uint16(p)] = true
			out = append(out, uint16(p))
		}
	}
	for d := 1; d <= sprayPredict; d++ {
		add(int(observed) + d)
		add(int(observed) - d)
	}
	for len(out) < count {
		add(1024 + int(rnd()%(65536-1024)))
	}
	return out
}

// pingVia sends one ping to p's peer at to from socket s.
func (n *Node) pingVia(p *path, to netip.AddrPort, s *Socket, now time.Time) {
	m, secret, ok := p.sent(to, now)
	if !ok {
		return
	}
	m.src = n.endpoint
	_ = s.WriteTo(appendDisco(make([]byte, 0, discoLen), m, secret), to)
}

// maxVia bounds the addresses a path remembers a probe socket for.
const maxVia = maxCandidates

// sockTo is the socket to send to p's peer at a from: the probe socket
// its pings or pongs arrived on, or the node's.
func (n *Node) sockTo(p *path, a netip.AddrPort) *Socket {
	p.mu.Lock()
	s := p.via[a]
	p.mu.Unlock()
	if s == nil {
		return n.sock
	}
	return s
}

// setVia records that a validated ping or pong of the peer from a arrived
// on s, a probe socket, or on the node's socket (nil).
func (p *path) setVia(a netip.AddrPort, s *Socket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s == nil {
		delete(p.via, a)
		return
	}
	if p.via == nil {
		p.via = make(map[netip.AddrPort]*Socket)
	}
	if _, ok := p.via[a]; !ok && len(p.via) >= maxVia {
		return
	}
	p.via[a] = s
}

// usesSocket reports whether some peer address is reached through s.
func (p *path) usesSocket(s *Socket) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, v := range p.via {
		if v == s {
			return true
		}
	}
	return false
}

// dropVia forgets the addresses reached through s, which is closing.
func (p *path) dropVia(s *Socket) {
	p.mu.Lock()
	defer p.mu.Unlock()
	maps.DeleteFunc(p.via, func(_ netip.AddrPort, v *Socket) bool { return v == s })
}

// isCandidateIP reports whether a is the IP of one of the peer's
// candidates in scope.
func (p *path) isCandidateIP(a netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.ContainsFunc(p.remote, func(c netip.AddrPort) bool { return c.Addr() == a })
}

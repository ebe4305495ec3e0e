package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Node is one process's presence on the network: its key, its Endpoint, its
// UDP socket, the outer QUIC transport it reaches relays with, and the inner
// QUIC transport its end-to-end connections run on. Inner packets to a peer
// take its direct path when one is confirmed (disco.go) and the current
// relay (SetRelay) otherwise; with neither they are dropped, as a network
// without a route would, and QUIC retransmits.
type Node struct {
	key      *identity.Key
	endpoint Endpoint
	sock     *Socket
	outer    *quic.Transport
	inner    *quic.Transport
	innerPC  *innerConn
	relay    atomic.Pointer[netip.AddrPort]

	addrMu sync.Mutex
	addrs  map[Endpoint]*net.UDPAddr

	gone atomic.Pointer[func(Endpoint)]

	// Peers homed on another rendezvous node than this node's relay
	// (DialPeerVia): their relay frames go to that node. nVia counts the
	// entries of via and of extra, so that the one-relay path checks
	// nothing more.
	viaMu sync.RWMutex
	via   map[Endpoint]viaRoute
	extra map[netip.AddrPort]int // relays, besides the current one, frames are accepted from
	nVia  atomic.Int32

	mode     atomic.Int32 // PathMode
	observed atomic.Pointer[netip.AddrPort]
	pathMu   sync.RWMutex
	paths    map[Endpoint]*path
	byAddr   map[netip.AddrPort]*path // direct addresses proved by ping or pong
	conns    map[*quic.Conn]*tracked
	wg       sync.WaitGroup

	// Bytes of inner traffic, for status and metrics.
	RelayedIn, RelayedOut atomic.Uint64
}

// NewNode opens a node's socket on listen (usually ":0").
func NewNode(key *identity.Key, listen string) (*Node, error) {
	n := &Node{key: key, endpoint: NewEndpoint(), addrs: make(map[Endpoint]*net.UDPAddr),
		paths: make(map[Endpoint]*path), byAddr: make(map[netip.AddrPort]*path), conns: make(map[*quic.Conn]*tracked)}
	sock, err := ListenSocket(listen, n.receive)
	if err != nil {
		return nil, err
	}
	n.sock = sock
	if n.innerPC, err = newInnerConn(sock, n.endpoint, n.send); err != nil {
		sock.Close()
		return nil, err
	}
	n.outer = &quic.Transport{Conn: sock.PacketConn()}
	n.inner = &quic.Transport{Conn: n.innerPC}
	return n, nil
}

// Key returns the node's identity.
func (n *Node) Key() *identity.Key { return n.key }

// Endpoint returns the node's Endpoint.
func (n *Node) Endpoint() Endpoint { return n.endpoint }

// LocalAddr is the node's UDP address.
func (n *Node) LocalAddr() netip.AddrPort { return n.sock.LocalAddr() }

// SetMode sets which paths inner packets may take; set it before the
// first connection.
func (n *Node) SetMode(m PathMode) { n.mode.Store(int32(m)) }

// Mode returns the path mode.
func (n *Node) Mode() PathMode { return PathMode(n.mode.Load()) }

// SetRelay sets the relay that carries inner packets.
func (n *Node) SetRelay(addr netip.AddrPort) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	n.relay.Store(&addr)
}

// DialRelay opens the outer QUIC connection to a relay. expect, if not
// zero, is the relay's ID; a relay proving another key fails the handshake.
func (n *Node) DialRelay(ctx context.Context, addr netip.AddrPort, expect identity.ID) (*quic.Conn, error) {
	tlsConf, err := ClientTLS(n.key, ALPNRelay, expect)
	if err != nil {
		return nil, err
	}
	return n.outer.Dial(ctx, net.UDPAddrFromAddrPort(addr), tlsConf, RelayQUICConfig())
}

// DialPeer opens an end-to-end connection to the node with ID id running
// as Endpoint ep. The handshake fails, wrapping ErrPeerMismatch, unless the
// peer proves id's key — whoever carried the packets.
func (n *Node) DialPeer(ctx context.Context, id identity.ID, ep Endpoint) (*quic.Conn, error) {
	tlsConf, err := ClientTLS(n.key, ALPNPeer, id)
	if err != nil {
		return nil, err
	}
	c, err := n.inner.Dial(ctx, n.addr(ep), tlsConf, PeerQUICConfig())
	if err != nil {
		return nil, fmt.Errorf("handshake with %s: %w", id.Short(), err)
	}
	n.track(c, ep)
	return c, nil
}

// DialPeerVia is DialPeer for a peer homed on another rendezvous node than
// this node's relay: its relay frames go to relay, to which this node must
// hold a registered outer connection (AddRelay) for as long as the
// connection lives. The route is forgotten when the connection ends.
func (n *Node) DialPeerVia(ctx context.Context, id identity.ID, ep Endpoint, relay netip.AddrPort) (*quic.Conn, error) {
	relay = netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())
	n.viaMu.Lock()
	if n.via == nil {
		n.via = make(map[Endpoint]viaRoute)
	}
	cur, ok := n.via[ep]
	if !ok {
		n.nVia.Add(1)
	}
	if cur.relay != relay {
		cur = viaRoute{relay: relay}
	}
	cur.refs++
	n.via[ep] = cur
	n.viaMu.Unlock()
	c, err := n.DialPeer(ctx, id, ep)
	if err != nil {
		n.dropVia(ep, relay)
		return nil, err
	}
	context.AfterFunc(c.Context(), func() { n.dropVia(ep, relay) })
	return c, nil
}

// viaRoute is the relay of a peer dialed with DialPeerVia, and how many
// connections use it.
type viaRoute struct {
	relay netip.AddrPort
	refs  int
}

func (n *Node) dropVia(ep Endpoint, relay netip.AddrPort) {
	n.viaMu.Lock()
	if cur, ok := n.via[ep]; ok && cur.relay == relay {
		cur.refs--
		if cur.refs > 0 {
			n.via[ep] = cur
		} else {
			delete(n.via, ep)
			n.nVia.Add(-1)
		}
	}
	n.viaMu.Unlock()
}

// AddRelay accepts relay frames from relay besides the current one (see
// DialPeerVia); each AddRelay is undone by one RemoveRelay.
func (n *Node) AddRelay(relay netip.AddrPort) {
	relay = netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())
	n.viaMu.Lock()
	if n.extra == nil {
		n.extra = make(map[netip.AddrPort]int)
	}
	n.extra[relay]++
	n.nVia.Add(1)
	n.viaMu.Unlock()
}

// RemoveRelay undoes one AddRelay.
func (n *Node) RemoveRelay(relay netip.AddrPort) {
	relay = netip.AddrPortFrom(relay.Addr().Unmap(), relay.Port())
	n.viaMu.Lock()
	if c, ok := n.extra[relay]; ok {
		if c <= 1 {
			delete(n.extra, relay)
		} else {
			n.extra[relay] = c - 1
		}
		n.nVia.Add(-1)
	}
	n.viaMu.Unlock()
}

// relayFor returns the relay that carries frames to ep.
func (n *Node) relayFor(ep Endpoint) (netip.AddrPort, bool) {
	if n.nVia.Load() != 0 {
		n.viaMu.RLock()
		r, ok := n.via[ep]
		live := ok && n.extra[r.relay] > 0
		n.viaMu.RUnlock()
		if live {
			return r.relay, true
		}
		// The session to the peer's home node ended (the node died):
		// try this node's relay, where the peer may have re-homed.
	}
	relay := n.relay.Load()
	if relay == nil {
		return netip.AddrPort{}, false
	}
	return *relay, true
}

// fromRelay reports whether frames from addr are relay frames.
func (n *Node) fromRelay(addr netip.AddrPort) bool {
	if relay := n.relay.Load(); relay != nil && addr == *relay {
		return true
	}
	if n.nVia.Load() == 0 {
		return false
	}
	n.viaMu.RLock()
	_, ok := n.extra[addr]
	n.viaMu.RUnlock()
	return ok
}

// PeerListener accepts end-to-end connections.
type PeerListener struct {
	n  *Node
	ln *quic.Listener
}

// Accept waits for the next connection; the caller reads the peer's ID
// with PeerConnID and decides what it may do.
func (l *PeerListener) Accept(ctx context.Context) (*quic.Conn, error) {
	c, err := l.ln.Accept(ctx)
	if err != nil {
		return nil, err
	}
	if ep, ok := AddrEndpoint(c.RemoteAddr()); ok {
		l.n.track(c, ep)
	}
	return c, nil
}

// Close stops accepting.
func (l *PeerListener) Close() error { return l.ln.Close() }

// ListenPeers accepts end-to-end connections from any node.
func (n *Node) ListenPeers() (*PeerListener, error) {
	tlsConf, err := ServerTLS(n.key, ALPNPeer)
	if err != nil {
		return nil, err
	}
	ln, err := n.inner.Listen(tlsConf, PeerQUICConfig())
	if err != nil {
		return nil, err
	}
	return &PeerListener{n, ln}, nil
}

// Close closes both transports and the socket, and waits for the path
// goroutines of the connections that closed with them.
func (n *Node) Close() error {
	err := errors.Join(n.inner.Close(), n.outer.Close())
	n.innerPC.Close()
	n.wg.Wait()
	return errors.Join(err, n.sock.Close())
}

func (n *Node) addr(ep Endpoint) *net.UDPAddr {
	n.addrMu.Lock()
	defer n.addrMu.Unlock()
	a, ok := n.addrs[ep]
	if !ok {
		// Endpoints come from the relay; bound what a misbehaving one can
		// make us keep. Live connections hold their own address and
		// quic-go compares by value, so forgetting is safe.
		if len(n.addrs) >= 1<<16 {
			clear(n.addrs)
		}
		a = EndpointAddr(ep)
		n.addrs[ep] = a
	}
	return a
}

// send carries a run of inner packets to one peer — b holds packets of seg
// bytes, the last may be shorter — on its direct path if one is confirmed,
// through the relay otherwise. Packets without a route are dropped, as a
// network without one would, and QUIC retransmits.
func (n *Node) send(ep Endpoint, b []byte, seg int) {
	mode := n.Mode()
	if mode != PathRelay {
		n.pathMu.RLock()
		p := n.paths[ep]
		n.pathMu.RUnlock()
		if p != nil {
			if a, ok := p.current(time.Now()); ok {
				n.sock.WriteSegments(directHeader[:], b, seg, a)
				p.DirectOut.Add(uint64(len(b)))
				return
			}
			if mode == PathDirect && p.everBest.Load() {
				return // the direct path is gone; never relay
			}
		}
	}
	relay, ok := n.relayFor(ep)
	if !ok {
		return
	}
	var hdr [frameHeaderLen]byte
	hdr[0] = frameToRelay
	binary.BigEndian.PutUint64(hdr[1:], uint64(ep))
	n.sock.WriteSegments(hdr[:], b, seg, relay)
	n.RelayedOut.Add(uint64(len(b)))
}

var directHeader = [1]byte{frameDirect}

// OnGone sets the function called when the relay reports that an
// Endpoint this node sent to is not attached there (the process left).
// It runs on the socket's reader and must not block.
func (n *Node) OnGone(f func(Endpoint)) { n.gone.Store(&f) }

// receive takes a run of frames from the socket.
func (n *Node) receive(run []byte, seg int, from netip.AddrPort) {
	for len(run) > 0 {
		f := run[:min(seg, len(run))]
		run = run[len(f):]
		n.receiveFrame(f, from)
	}
}

func (n *Node) receiveFrame(b []byte, from netip.AddrPort) {
	switch b[0] {
	case frameDiscoPing, frameDiscoPong:
		n.receiveDisco(b, from)
		return
	case frameDirect:
		n.pathMu.RLock()
		p := n.byAddr[from]
		n.pathMu.RUnlock()
		if p == nil || len(b) == 1 {
			return
		}
		bp := packetBufs.Get().(*[]byte)
		m := copy(*bp, b[1:])
		p.DirectIn.Add(uint64(m))
		n.innerPC.deliver(bp, m, p.addr)
		return
	}
	if len(b) < frameHeaderLen || !n.fromRelay(from) {
		return
	}
	src := Endpoint(binary.BigEndian.Uint64(b[1:9]))
	switch {
	case b[0] == frameGone:
		if f := n.gone.Load(); f != nil {
			(*f)(src)
		}
		return
	case b[0] != frameFromRelay || len(b) == frameHeaderLen:
		return
	}
	bp := packetBufs.Get().(*[]byte)
	m := copy(*bp, b[frameHeaderLen:])
	n.RelayedIn.Add(uint64(m))
	n.innerPC.deliver(bp, m, n.addr(src))
}

// PeerConnID returns the peer ID of an end-to-end connection.
func PeerConnID(c *quic.Conn) (identity.ID, error) {
	return PeerID(c.ConnectionState().TLS)
}

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
	"golang.org/x/time/rate"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Node is one process's presence on the network: its key, its Endpoint, its
// UDP socket, the outer QUIC transport it reaches relays with, and the inner
// QUIC transport its end-to-end connections run on. Inner packets to a peer
// take its direct path when one is confirmed (disco.go) and the relay its
// routing table names (SetRoutes) otherwise; with neither they are dropped,
// as a network without a route would, and QUIC retransmits.
//
// Direct paths are looked for at once on the connections a node dials
// (DialPeer), and on those it accepts (PeerListener) only once its owner
// calls Authorized: until then a stranger who connects gets nothing but
// QUIC from the node — no candidates, no pings, no pongs. Whatever its
// connections, the node's probes stay within a budget and its own scope
// (disco.go, "Strangers").
type Node struct {
	key      *identity.Key
	endpoint Endpoint
	nonce    EndpointNonce // derives endpoint from key (DeriveEndpoint)
	sock     *Socket
	outer    *quic.Transport
	inner    *quic.Transport
	innerPC  *innerConn
	routes   atomic.Pointer[routes]
	gone     chan Endpoint
	mode     atomic.Int32 // PathMode
	observed atomic.Pointer[netip.AddrPort]
	probes   *rate.Limiter // the probe budget, one for the node
	hard     *hardBudgets  // the hard-NAT budget (hardnat.go)
	jumps    *jumpMonitor  // time jumps (timejump.go)
	wg       sync.WaitGroup

	// The host's network changes (netmon.go).
	net        netWatch
	netChanges atomic.Uint64
	// probesDeferred counts probe rounds the probe budget cut short.
	probesDeferred atomic.Uint64
	// The router's mapping (mapping.go).
	mapped  atomic.Pointer[netip.AddrPort]
	mapMu   sync.Mutex
	mapStop context.CancelFunc // set by MapPort
	closed  bool               // Close ran: MapPort starts nothing

	// ifaces is the node's interface addresses (as net.InterfaceAddrs
	// gives them), read by its network monitor with each fingerprint:
	// at start and after each change (netmon.go). The candidates and the
	// scope come from it, so that neither a heartbeat nor a stranger's
	// ping has the node dump the kernel's address table.
	ifaces atomic.Pointer[[]net.Addr]
	// scopeView is the node's scope as computed from scopeOf, a reading
	// of ifaces (Node.scope).
	scopeMu   sync.Mutex
	scopeOf   *[]net.Addr
	scopeView scope

	// localRelay is where the relay of this process listens, if it runs
	// one (localrelay.go).
	localRelay atomic.Pointer[netip.AddrPort]

	// testCandidates, when set, replaces the candidates the node offers:
	// tests put a forwarder between two nodes with it.
	testCandidates func() []netip.AddrPort
	// testUnsized makes the node take payloads as a node from before
	// packet sizing did (pathsize.go): every one is a QUIC packet.
	testUnsized bool

	// Lock order: pathMu before path.mu, and pathMu before addrMu;
	// path.mu and addrMu are never held together, and scopeMu is taken
	// with nothing else held. The packet path takes pathMu for reading
	// only, and nothing is held while it writes to the socket.
	pathMu sync.RWMutex
	paths  map[Endpoint]*path
	byAddr map[netip.AddrPort]*path // direct addresses proved by ping or pong
	conns  map[*quic.Conn]*tracked

	addrMu sync.Mutex
	addrs  map[Endpoint]*net.UDPAddr

	// The lease the node keeps at its relay, and the answers (lease.go).
	lease atomic.Pointer[leaseKeeping]
	kept  chan uint64

	// Bytes of inner traffic, for status and metrics.
	RelayedIn, RelayedOut atomic.Uint64

	// fragID numbers the packets this node fragments; reasm joins the
	// fragments it receives (reassembly.go).
	fragID atomic.Uint32
	reasm  reassembly

	// epoch is what receive times are counted from (clock).
	epoch time.Time
}

// goneQueue bounds the gone notices waiting to be read (Gone): more than
// that in a burst are dropped, and the sender's next packet brings another.
const goneQueue = 64

// keptQueue bounds the lease answers waiting to be read (Kept).
const keptQueue = 8

// NewNode opens a node's socket on listen (usually ":0").
func NewNode(key *identity.Key, listen string) (*Node, error) {
	n := &Node{key: key, addrs: make(map[Endpoint]*net.UDPAddr),
		paths: make(map[Endpoint]*path), byAddr: make(map[netip.AddrPort]*path), conns: make(map[*quic.Conn]*tracked),
		gone: make(chan Endpoint, goneQueue), kept: make(chan uint64, keptQueue), probes: rate.NewLimiter(probeRate, probeBurst), hard: newHardBudgets(), epoch: time.Now()}
	n.endpoint, n.nonce = NewEndpoint(key.ID())
	n.routes.Store(noRoutes)
	sock, err := listenSocket(listen, n.receiveLent, true)
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
	n.jumps = newJumpMonitor(jumpTick, jumpLate, time.Now)
	n.startNetMonitor()
	return n, nil
}

// Key returns the node's identity.
func (n *Node) Key() *identity.Key { return n.key }

// Endpoint returns the node's Endpoint.
func (n *Node) Endpoint() Endpoint { return n.endpoint }

// EndpointNonce returns the nonce that derives the node's Endpoint from its
// key; the node proves its Endpoint with it when it registers.
func (n *Node) EndpointNonce() EndpointNonce { return n.nonce }

// LocalAddr is the node's UDP address.
func (n *Node) LocalAddr() netip.AddrPort { return n.sock.LocalAddr() }

// SetMode sets which paths inner packets may take; set it before the
// first connection.
func (n *Node) SetMode(m PathMode) { n.mode.Store(int32(m)) }

// Mode returns the path mode.
func (n *Node) Mode() PathMode { return PathMode(n.mode.Load()) }

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
	n.track(c, ep, true)
	return c, nil
}

// PeerListener accepts end-to-end connections. An accepted connection
// looks for a direct path only once the node's Authorized is called for
// it: a peer that passes no policy gets no packet from the node outside
// the connection, wherever it says it is.
type PeerListener struct {
	n  *Node
	ln *quic.Listener
}

// Accept waits for the next connection; the caller reads the peer's ID
// with PeerConnID, decides what it may do, and calls Node.Authorized once
// the peer passed a policy.
func (l *PeerListener) Accept(ctx context.Context) (*quic.Conn, error) {
	c, err := l.ln.Accept(ctx)
	if err != nil {
		return nil, err
	}
	if ep, ok := AddrEndpoint(c.RemoteAddr()); ok {
		l.n.track(c, ep, false)
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
	n.jumps.close()
	n.stopNetMonitor()
	n.stopMapping()
	err := errors.Join(n.inner.Close(), n.outer.Close())
	n.innerPC.Close()
	n.wg.Wait()
	n.reasm.close()
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
	now := time.Now()
	n.pathMu.RLock()
	p := n.paths[ep]
	n.pathMu.RUnlock()
	if mode != PathRelay && p != nil {
		if a, ok := p.current(now); ok {
			bytes, frames := n.sendSized(n.sockTo(p, a), directHeader[:], b, seg, a, p.sizeFor(&p.sizeDirect, a, now))
			// Counted once handed to the socket, which writes a ping
			// sent after this call behind them (txqueue.go): it trails
			// these packets on the path (the liveness rule, disco.go).
			p.DirectOut.Add(bytes)
			p.DirectOutPkts.Add(frames)
			return
		}
		if mode == PathDirect && p.everBest.Load() {
			return // the direct path is gone; never relay
		}
	}
	relay, ok := n.routes.Load().relayFor(ep)
	if !ok {
		return
	}
	var hdr [frameHeaderLen]byte
	hdr[0] = frameToRelay
	binary.BigEndian.PutUint64(hdr[1:], uint64(ep))
	// Before the connection is tracked (its handshake) there is no path
	// to keep a size in (pathsize.go).
	pl := sizePlan{sz: sendBoth}
	if p != nil {
		pl = p.sizeFor(&p.sizeRelay, relay.Addr, now)
	}
	n.sendSized(n.sock, hdr[:], b, seg, relay.Addr, pl)
	n.RelayedOut.Add(uint64(len(b)))
}

var directHeader = [1]byte{frameDirect}

// Gone delivers the Endpoints a relay reported as not attached there
// when this node sent to them (the process left, or the relay restarted
// and it has not registered again yet). Its one reader is the owner of the
// node's rendezvous sessions, which tells the two apart.
func (n *Node) Gone() <-chan Endpoint { return n.gone }

// clock is the node's monotonic time in nanoseconds since its epoch;
// never 0, which stands for "never" in the receive stamps.
func (n *Node) clock() int64 { return max(int64(time.Since(n.epoch)), 1) }

// receive takes a run of frames from the socket, copying the packets it
// queues.
func (n *Node) receive(run []byte, seg int, from netip.AddrPort) {
	n.receiveRun(run, seg, from, nil, nil)
}

// receiveLent takes a run of frames from the socket; the packets it queues
// stay in run and borrow blk, the read's buffer, unless blk is nil.
func (n *Node) receiveLent(run []byte, seg int, from netip.AddrPort, blk *rxBlock) {
	n.receiveRun(run, seg, from, nil, blk)
}

// receiveRun takes a run of frames that arrived on via: a probe socket of a
// hard-NAT attempt (hardnat.go), which takes part in direct paths only, or
// the node's socket when nil. The clock is read once per run, not per
// frame: the stamps it feeds are for people, and a run arrives in one go.
// The inner packets of the run are queued together at its end (inRun).
func (n *Node) receiveRun(run []byte, seg int, from netip.AddrPort, via *Socket, blk *rxBlock) {
	in := inRun{now: n.clock(), from: from, via: via, blk: blk}
	for len(run) > 0 {
		f := run[:min(seg, len(run))]
		run = run[len(f):]
		n.receiveFrame(f, &in)
	}
	in.flush(n)
}

// inRun is what receiveRun keeps across the frames of one run: the inner
// packets to queue, and the lookups that hold for the whole run since
// every frame in it came from one sender.
type inRun struct {
	now  int64
	from netip.AddrPort
	via  *Socket
	blk  *rxBlock // the read's buffer, to lend to the packets; nil: copy them

	pkts [maxBatch]queuedPacket
	k    int
	lent int32 // of pkts, those that lie in blk

	// The direct path from is proved for, once looked up; a disco frame
	// may prove or forget one, so it makes the next frame look again.
	direct       *path
	directLooked bool

	// The last relayed sender, its path and its address.
	src     Endpoint
	srcPath *path
	srcAddr net.Addr
	srcOK   bool
}

func (in *inRun) add(n *Node, pkt queuedPacket) {
	in.pkts[in.k] = pkt
	in.k++
	if in.k == len(in.pkts) {
		in.flush(n)
	}
}

// packet makes b, a packet in the run, a queued one: lent the read's
// buffer, or copied.
func (in *inRun) packet(b []byte, addr net.Addr) queuedPacket {
	if in.blk != nil {
		in.lent++ // held at the flush
		return queuedPacket{b: b, blk: in.blk, addr: addr}
	}
	bp := packetBufs.Get().(*[]byte)
	return ownPacket(bp, copy(*bp, b), addr)
}

func (in *inRun) flush(n *Node) {
	if in.lent > 0 {
		in.blk.hold(in.lent) // before quic-go can take them
		in.lent = 0
	}
	n.innerPC.deliverRun(in.pkts[:in.k])
	clear(in.pkts[:in.k])
	in.k = 0
}

// receiveFrame takes one frame of a run.
func (n *Node) receiveFrame(b []byte, in *inRun) {
	switch b[0] {
	case frameDiscoPing, frameDiscoPong:
		n.receiveDisco(b, in.from, in.via)
		in.directLooked = false
		return
	case frameKept:
		if in.via == nil {
			n.receiveKept(b, in.from)
		}
		return
	case frameDirect:
		if !in.directLooked {
			n.pathMu.RLock()
			in.direct = n.byAddr[in.from]
			n.pathMu.RUnlock()
			in.directLooked = true
		}
		p := in.direct
		if p == nil || len(b) == 1 {
			return
		}
		if b[1]&0xc0 == 0 && !n.testUnsized {
			n.receiveDirectPayload(b[1:], p, in)
			return
		}
		p.DirectIn.Add(uint64(len(b) - 1))
		p.DirectInPkts.Add(1)
		p.lastDirectRx.Store(in.now)
		in.add(n, in.packet(b[1:], p.addr))
		return
	}
	if in.via != nil || len(b) < frameHeaderLen || !n.routes.Load().accepts(in.from) {
		return
	}
	src := Endpoint(binary.BigEndian.Uint64(b[1:9]))
	switch {
	case b[0] == frameGone:
		select {
		case n.gone <- src:
		default:
		}
		return
	case b[0] != frameFromRelay || len(b) == frameHeaderLen:
		return
	}
	if !in.srcOK || in.src != src {
		n.pathMu.RLock()
		in.srcPath = n.paths[src]
		n.pathMu.RUnlock()
		in.src, in.srcAddr, in.srcOK = src, n.addr(src), true
	}
	payload := b[frameHeaderLen:]
	if payload[0]&0xc0 == 0 && !n.testUnsized {
		n.receiveRelayedPayload(payload, in)
		return
	}
	n.RelayedIn.Add(uint64(len(payload)))
	if in.srcPath != nil {
		in.srcPath.lastRelayRx.Store(in.now)
	}
	in.add(n, in.packet(payload, in.srcAddr))
}

// receiveDirectPayload takes a payload other than a QUIC packet from p's
// direct path.
func (n *Node) receiveDirectPayload(b []byte, p *path, in *inRun) {
	switch b[0] {
	case payloadFragment:
		p.DirectIn.Add(uint64(len(b)))
		p.DirectInPkts.Add(1)
		p.lastDirectRx.Store(in.now)
		if bp, m := n.reasm.add(p.ep, b); bp != nil {
			in.add(n, ownPacket(bp, m, p.addr))
		}
	case payloadSizeProbe:
		if len(b) >= sizeAckLen {
			sock := in.via
			if sock == nil {
				sock = n.sock
			}
			_ = sock.WriteTo(appendSizeAck(append(make([]byte, 0, 1+sizeAckLen), frameDirect), b), in.from)
		}
	case payloadSizeAck:
		if len(b) == sizeAckLen {
			p.sizeAcked(binary.BigEndian.Uint64(b[1:]), false, time.Now())
		}
	}
}

// receiveRelayedPayload takes a payload other than a QUIC packet that the
// relay brought from in.src.
func (n *Node) receiveRelayedPayload(b []byte, in *inRun) {
	switch b[0] {
	case payloadFragment:
		n.RelayedIn.Add(uint64(len(b)))
		if in.srcPath != nil {
			in.srcPath.lastRelayRx.Store(in.now)
		}
		if bp, m := n.reasm.add(in.src, b); bp != nil {
			in.add(n, ownPacket(bp, m, in.srcAddr))
		}
	case payloadSizeProbe:
		// Answered to any sender the relay vouches for: an ack is
		// smaller than the probe, and goes only back to it.
		if len(b) >= sizeAckLen {
			var hdr [frameHeaderLen]byte
			hdr[0] = frameToRelay
			binary.BigEndian.PutUint64(hdr[1:], uint64(in.src))
			_ = n.sock.WriteTo(appendSizeAck(hdr[:], b), in.from)
		}
	case payloadSizeAck:
		if len(b) == sizeAckLen && in.srcPath != nil {
			in.srcPath.sizeAcked(binary.BigEndian.Uint64(b[1:]), true, time.Now())
		}
	}
}

// PeerConnID returns the peer ID of an end-to-end connection.
func PeerConnID(c *quic.Conn) (identity.ID, error) {
	return PeerID(c.ConnectionState().TLS)
}

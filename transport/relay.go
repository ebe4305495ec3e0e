package transport

// The relay: how end-to-end packets cross a rendezvous node.
//
// Every node dials a QUIC connection to its relay (outer) on the same UDP
// socket it uses for everything else, and registers an Endpoint there; it
// keeps the connection open, or, a device, closes it and holds the
// registration on a lease, with keep frames (lease.go). The
// end-to-end QUIC packets (inner) between two nodes travel as the payload
// of relay frames (toRelay, fromRelay and gone; their layout is in
// frame.go), sent as plain UDP datagrams on that same socket.
//
// The relay accepts a toRelay frame only from the UDP address of a node
// registered over its outer connection (the registration proved the node's
// key), and only to an Endpoint registered the same way; it stamps the
// sender's Endpoint itself, so no one can pose as another sender. Frames
// that break these rules are dropped without an answer: a relay never
// reflects traffic to an address that did not register. The payload is an
// inner QUIC packet that the relay can neither read nor forge: forging would
// need the two nodes' session keys.
//
// A gone frame lets a client drop a connection to a device process that
// has left (or restarted as a new Endpoint) at once, instead of waiting for
// an idle timeout. It is shorter than the frame that caused it, so it
// amplifies nothing, and it goes only to registered senders.
//
// Both forwarded frame kinds have the same header size, so the relay
// rewrites the header in place: a run of frames one GRO read brought from
// one node to one Endpoint leaves in one GSO write, from the socket's
// reader goroutine — no copy, no allocation, no hand-off per packet.

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport/limit"
)

// Relay forwards relay frames between the endpoints attached to it.
// Attach and detach are done by the registry when nodes (un)register;
// forwarding runs on the socket's reader goroutine.
type Relay struct {
	sock *Socket
	tr   *quic.Transport

	mu     sync.RWMutex
	byEP   map[Endpoint]netip.AddrPort
	byAddr map[netip.AddrPort]Endpoint

	// Leases (lease.go): the registry's handler of keeps, and what
	// Listen makes of it with the secret lease keys derive from.
	onKeep  func(Keep, netip.AddrPort) bool
	leasing atomic.Pointer[leasing]

	// Counters for logs and metrics: frames forwarded, their bytes
	// (headers included, as they leave), and frames dropped.
	Forwarded      atomic.Uint64
	ForwardedBytes atomic.Uint64
	Dropped        atomic.Uint64
}

// ListenRelay opens the relay's UDP socket on addr. The outer QUIC
// transport of the registry runs on the returned Relay's Socket.
func ListenRelay(addr string) (*Relay, error) {
	r := &Relay{
		byEP:   make(map[Endpoint]netip.AddrPort),
		byAddr: make(map[netip.AddrPort]Endpoint),
	}
	sock, err := listenSocket(addr, lendless(r.forward), false)
	if err != nil {
		return nil, err
	}
	r.sock = sock
	return r, nil
}

// Socket is the relay's UDP socket.
func (r *Relay) Socket() *Socket { return r.sock }

// Close closes the QUIC transport, if any, and the socket.
func (r *Relay) Close() error {
	var err error
	if r.tr != nil {
		err = r.tr.Close()
	}
	return errors.Join(err, r.sock.Close())
}

// Attach routes frames for ep to addr and accepts frames from addr as
// coming from ep, replacing any earlier route of either. The returned
// function undoes exactly this attachment, if it is still in place.
func (r *Relay) Attach(ep Endpoint, addr netip.AddrPort) (detach func()) {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	r.mu.Lock()
	if old, ok := r.byEP[ep]; ok {
		delete(r.byAddr, old)
	}
	if old, ok := r.byAddr[addr]; ok {
		delete(r.byEP, old)
	}
	r.byEP[ep] = addr
	r.byAddr[addr] = ep
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		if r.byEP[ep] == addr {
			delete(r.byEP, ep)
			delete(r.byAddr, addr)
		}
		r.mu.Unlock()
	}
}

// Route returns the address frames for ep go to, if ep is attached.
func (r *Relay) Route(ep Endpoint) (netip.AddrPort, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	addr, ok := r.byEP[ep]
	return addr, ok
}

// Attached returns the number of attached endpoints.
func (r *Relay) Attached() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byEP)
}

// forward relays a run of frames from one sender (see FrameHandler).
// Consecutive frames to one Endpoint are rewritten in place and leave in
// one write.
func (r *Relay) forward(run []byte, seg int, from netip.AddrPort) {
	if run[0] == frameKeep {
		// Keeps come one per datagram, seconds apart, from addresses
		// that may not be attached (yet): a node whose NAT moved, or one
		// this relay forgot in a restart.
		for off := 0; off < len(run); off += seg {
			r.keep(run[off:min(off+seg, len(run))], from)
		}
		return
	}
	r.mu.RLock()
	src, ok := r.byAddr[from]
	r.mu.RUnlock()
	if !ok {
		r.Dropped.Add(uint64((len(run) + seg - 1) / seg))
		return
	}
	var (
		start, k int // the pending run: run[start:off], k frames
		dst      Endpoint
		to       netip.AddrPort
	)
	maxK := max(1, min(maxBatch, maxRunBytes/seg))
	flush := func(off int) {
		if k > 0 {
			r.sock.writeRun(run[start:off], seg, k, to)
			r.Forwarded.Add(uint64(k))
			r.ForwardedBytes.Add(uint64(off - start))
			k = 0
		}
	}
	off := 0
	for off < len(run) {
		f := run[off:min(off+seg, len(run))]
		if len(f) < frameHeaderLen || f[0] != frameToRelay {
			flush(off)
			r.Dropped.Add(1)
			off += len(f)
			continue
		}
		d := Endpoint(binary.BigEndian.Uint64(f[1:9]))
		if k > 0 && (d != dst || k == maxK) {
			flush(off)
		}
		if k == 0 {
			r.mu.RLock()
			addr, ok := r.byEP[d]
			r.mu.RUnlock()
			if !ok {
				r.Dropped.Add(1)
				f[0] = frameGone
				_ = r.sock.WriteTo(f[:frameHeaderLen], from)
				off += len(f)
				continue
			}
			start, dst, to = off, d, addr
		}
		f[0] = frameFromRelay
		binary.BigEndian.PutUint64(f[1:9], uint64(src))
		k++
		off += len(f)
	}
	flush(off)
}

// String describes the relay for logs.
func (r *Relay) String() string {
	return fmt.Sprintf("relay %s", r.sock.LocalAddr())
}

// ListenConfig bounds what the connections to a relay may cost.
type ListenConfig struct {
	// MaxStreams caps the registry requests one connection has open at a
	// time; zero keeps RelayQUICConfig's.
	MaxStreams int64
	// Admit, if set, is asked about every new connection before its
	// handshake: an error refuses it; otherwise the context it returns
	// ends when the connection does (or its handshake fails).
	Admit func(ctx context.Context, info *quic.ClientInfo) (context.Context, error)
	// Validate, if set, says whether a new connection from a source that
	// has not proved its address must first do so (a QUIC Retry, one more
	// round trip), so that spoofed sources cannot make the relay spend
	// handshakes.
	Validate func(remote net.Addr) bool
}

// Listen starts accepting outer QUIC connections (registrations and
// lookups) on the relay's socket. The stateless reset key is derived from
// the relay's identity, so that after a restart the relay answers packets
// of connections it no longer knows with a reset the node recognises, and
// nodes re-register within one keep-alive instead of one idle timeout.
func (r *Relay) Listen(key *identity.Key, cfg ListenConfig) (*quic.Listener, error) {
	tlsConf, err := ServerTLS(key, ALPNRelay)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key.PrivateKey().Seed())
	mac.Write([]byte("tunnel relay stateless reset key"))
	var srk quic.StatelessResetKey
	copy(srk[:], mac.Sum(nil))
	mac.Reset()
	mac.Write([]byte("tunnel relay lease secret"))
	r.leasing.Store(&leasing{secret: mac.Sum(nil), keep: r.onKeep})
	r.tr = &quic.Transport{Conn: r.sock.PacketConn(), StatelessResetKey: &srk,
		ConnContext: cfg.Admit, VerifySourceAddress: cfg.Validate}
	qc := RelayQUICConfig()
	qc.MaxIncomingStreams = limit.OrDefault(cfg.MaxStreams, qc.MaxIncomingStreams)
	ln, err := r.tr.Listen(tlsConf, qc)
	if err != nil {
		return nil, fmt.Errorf("listen quic on %s: %w", r.sock.LocalAddr(), err)
	}
	return ln, nil
}

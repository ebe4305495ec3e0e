package transport

// Relay frames: how end-to-end packets cross a rendezvous node.
//
// Every node keeps one QUIC connection to its relay (outer) on the same UDP
// socket it uses for everything else, and registers an Endpoint there. The
// end-to-end QUIC packets (inner) between two nodes travel as the payload
// of relay frames, sent as plain UDP datagrams on that same socket:
//
//	toRelay, node → relay
//	  type     uint8     0x01
//	  dst      [8]byte   Endpoint of the receiving node, big-endian
//	  payload  …         one inner QUIC packet, opaque to the relay
//
//	fromRelay, relay → node
//	  type     uint8     0x02
//	  src      [8]byte   Endpoint of the sending node
//	  payload  …         the same bytes, unchanged
//
// The first byte of a frame has its two top bits clear, which a QUIC packet
// never has (RFC 9000 §17: long headers set 0x80, short headers set the fixed
// bit 0x40), so a socket tells frames from QUIC by the first byte.
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
//	gone, relay → node
//	  type     uint8     0x03
//	  dst      [8]byte   an Endpoint the node sent to that is not attached
//
// A gone frame lets a client drop a connection to a device process that
// has left (or restarted as a new Endpoint) at once, instead of waiting for
// an idle timeout. It is shorter than the frame that caused it, so it
// amplifies nothing, and it goes only to registered senders.
//
// Both forwarded frame kinds have the same header size; the relay copies
// each frame once into a pooled buffer with the new header and queues it
// for its socket's batching writer: no allocation per packet.

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Frame types.
const (
	frameToRelay   = 0x01
	frameFromRelay = 0x02
	frameGone      = 0x03
	frameHeaderLen = 9
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

	// Counters for logs and metrics.
	Forwarded atomic.Uint64
	Dropped   atomic.Uint64
}

// ListenRelay opens the relay's UDP socket on addr. The outer QUIC
// transport of the registry runs on the returned Relay's Socket.
func ListenRelay(addr string) (*Relay, error) {
	r := &Relay{
		byEP:   make(map[Endpoint]netip.AddrPort),
		byAddr: make(map[netip.AddrPort]Endpoint),
	}
	sock, err := ListenSocket(addr, r.forward)
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

// Attached returns the number of attached endpoints.
func (r *Relay) Attached() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byEP)
}

func (r *Relay) forward(b []byte, from netip.AddrPort) {
	if len(b) < frameHeaderLen || b[0] != frameToRelay {
		r.Dropped.Add(1)
		return
	}
	dst := Endpoint(binary.BigEndian.Uint64(b[1:9]))
	r.mu.RLock()
	src, okSrc := r.byAddr[from]
	to, okDst := r.byEP[dst]
	r.mu.RUnlock()
	if !okSrc {
		r.Dropped.Add(1)
		return
	}
	if !okDst {
		r.Dropped.Add(1)
		b[0] = frameGone
		_ = r.sock.WriteTo(b[:frameHeaderLen], from)
		return
	}
	// The reader's buffer holds other datagrams too (GRO): the frame is
	// copied once into a buffer the writer owns, which batches frames to
	// one node into one GSO write.
	bp := packetBufs.Get().(*[]byte)
	if len(b) > len(*bp) {
		packetBufs.Put(bp)
		r.Dropped.Add(1)
		return
	}
	f := (*bp)[:len(b)]
	f[0] = frameFromRelay
	binary.BigEndian.PutUint64(f[1:9], uint64(src))
	copy(f[frameHeaderLen:], b[frameHeaderLen:])
	r.sock.Send(bp, len(f), to)
	r.Forwarded.Add(1)
}

// String describes the relay for logs.
func (r *Relay) String() string {
	return fmt.Sprintf("relay %s", r.sock.LocalAddr())
}

// Listen starts accepting outer QUIC connections (registrations and
// lookups) on the relay's socket. The stateless reset key is derived from
// the relay's identity, so that after a restart the relay answers packets
// of connections it no longer knows with a reset the node recognises, and
// nodes re-register within one keep-alive instead of one idle timeout.
func (r *Relay) Listen(key *identity.Key) (*quic.Listener, error) {
	tlsConf, err := ServerTLS(key, ALPNRelay)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key.PrivateKey().Seed())
	mac.Write([]byte("tunnel relay stateless reset key"))
	var srk quic.StatelessResetKey
	copy(srk[:], mac.Sum(nil))
	r.tr = &quic.Transport{Conn: r.sock.PacketConn(), StatelessResetKey: &srk}
	ln, err := r.tr.Listen(tlsConf, RelayQUICConfig())
	if err != nil {
		return nil, fmt.Errorf("listen quic on %s: %w", r.sock.LocalAddr(), err)
	}
	return ln, nil
}

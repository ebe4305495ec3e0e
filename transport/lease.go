package transport

// Leases: a registration the relay holds with no connection open.
//
// An idle device costs a relay what its outer QUIC connection holds —
// quic-go's connection state, what crypto/tls keeps after the handshake,
// and the goroutines that serve it: ~50 KiB live (BENCHMARKS.md,
// "Footprint"). A device needs none of it between registrations: relay
// frames are routed by the maps of relay.go, not by the connection. So a
// device registers over QUIC as before, asks for a lease, closes the
// connection, and from then on keeps its registration with small UDP
// frames on the same socket, which also keep its NAT mapping open:
//
//	keep, node → relay
//	  type     uint8     0x0A
//	  ep       [8]byte   the node's Endpoint
//	  id       [32]byte  the node's ID
//	  flags    uint8     bit 0: the node publishes (a device); bit 1: the
//	                     node leaves, and asks the relay to end the
//	                     registration now (a release)
//	  expires  uint64    the lease's end, Unix seconds of the relay's clock
//	  seq      uint64    the node's keep counter for this lease: 1, 2, 3…
//	  mac      [16]byte  HMAC-SHA256(lease key, all bytes before mac), truncated
//
//	kept, relay → node: the answer to a keep the relay took
//	  type     uint8     0x0B
//	  ep       [8]byte   the keep's
//	  seq      uint64    the keep's
//	  mac      [16]byte  HMAC-SHA256(lease key, all bytes before mac), truncated
//
// The lease key is HMAC-SHA256 of the lease (ep, id, flags, expires) under
// a secret the relay derives from its identity key. The relay hands it to
// the node in the registration's reply, inside the QUIC connection that
// proved the node's key; it never travels in the clear. So the relay keeps
// nothing to check a keep — a valid MAC proves that the relay itself
// leased that Endpoint to that ID — and a relay that restarted with the
// same key takes a device's next keep as its registration again, with no
// handshake: a restart costs idle devices nothing, and a relay does not
// face every device's handshake at once when it comes back.
//
// Strangers: a keep costs the relay one parse and one HMAC before it is
// dropped; it is never answered unless its MAC holds, and a kept frame is
// shorter than the keep it answers, so a relay amplifies nothing. The seq
// must grow: the relay drops a keep whose seq is not above the last it
// took for the registration, so a keep captured on the way and replayed
// from another address does not move the route. What a replay can still
// do is the relay's own power, lent to an on-path attacker who could drop
// the packets anyway, and only until the lease expires: replayed to a
// relay that forgot the seq (it restarted), it moves the route until the
// device's next keep, a few seconds; replayed after the device left
// (released, or dropped idle), it registers the device again at the
// attacker's address, so lookups find it and dials fail at the handshake,
// which needs the device's key, until the relay drops it idle again.
//
// A node checks a kept frame's MAC with the same key before it counts as
// an answer, so nobody but the relay can make a device believe its
// registration holds.

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Frame types of leases.
const (
	frameKeep = 0x0A
	frameKept = 0x0B
)

const (
	keepLen      = 1 + 8 + 32 + 1 + 8 + 8 + frameMACLen
	keptLen      = 1 + 8 + 8 + frameMACLen
	leaseDevice  = 1 << 0
	leaseRelease = 1 << 1
)

// LeaseKey is the secret a node proves its lease with.
type LeaseKey [16]byte

// Lease is a registration a relay holds with no connection: what a node
// must present in every keep. Expires is the relay's (Unix seconds on its
// clock); a node does not read it, it renews after the lease's TTL halves
// on its own clock.
type Lease struct {
	Endpoint Endpoint
	ID       identity.ID
	Device   bool
	Expires  uint64
	Key      LeaseKey
}

// Keep is a keep frame whose MAC the relay checked: the lease it keeps
// (Expires tells one lease of an Endpoint from the next), its number, and
// whether it releases the registration.
type Keep struct {
	Endpoint Endpoint
	ID       identity.ID
	Device   bool
	Expires  uint64
	Seq      uint64
	Release  bool
}

// appendKeep appends a keep of l numbered seq.
func appendKeep(b []byte, l Lease, seq uint64, release bool) []byte {
	start := len(b)
	var extra byte
	if release {
		extra = leaseRelease
	}
	b = appendLeaseFields(append(b, frameKeep), l, extra)
	b = binary.BigEndian.AppendUint64(b, seq)
	return appendFrameMAC(b, start, l.Key[:])
}

// appendLeaseFields appends the lease's part of a keep, with extra flags;
// without, it is what the lease's key is derived from.
func appendLeaseFields(b []byte, l Lease, extra byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(l.Endpoint))
	b = append(b, l.ID[:]...)
	flags := extra
	if l.Device {
		flags |= leaseDevice
	}
	b = append(b, flags)
	return binary.BigEndian.AppendUint64(b, l.Expires)
}

// parseKeep reads a keep without checking its MAC: the lease's key
// follows from its fields.
func parseKeep(b []byte) (k Keep, ok bool) {
	if len(b) != keepLen || b[0] != frameKeep {
		return Keep{}, false
	}
	k.Endpoint = Endpoint(binary.BigEndian.Uint64(b[1:9]))
	copy(k.ID[:], b[9:41])
	k.Device = b[41]&leaseDevice != 0
	k.Release = b[41]&leaseRelease != 0
	k.Expires = binary.BigEndian.Uint64(b[42:50])
	k.Seq = binary.BigEndian.Uint64(b[50:58])
	return k, k.Endpoint != 0
}

// appendKept appends the answer to keep seq of the lease with key.
func appendKept(b []byte, ep Endpoint, seq uint64, key LeaseKey) []byte {
	start := len(b)
	b = append(b, frameKept)
	b = binary.BigEndian.AppendUint64(b, uint64(ep))
	b = binary.BigEndian.AppendUint64(b, seq)
	return appendFrameMAC(b, start, key[:])
}

// parseKept checks a kept frame against the lease it must answer and
// returns its seq.
func parseKept(b []byte, l Lease) (seq uint64, ok bool) {
	if len(b) != keptLen || b[0] != frameKept || Endpoint(binary.BigEndian.Uint64(b[1:9])) != l.Endpoint {
		return 0, false
	}
	if !frameMACValid(b, l.Key[:]) {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[9:17]), true
}

// leaseKeyLabel starts what a lease's key is derived from.
const leaseKeyLabel = "tunnel lease key"

// leaseKeyOf derives the key of lease l (its Key field unread) from the
// relay's lease secret.
func leaseKeyOf(secret []byte, l Lease) LeaseKey {
	var msg [len(leaseKeyLabel) + 8 + 32 + 1 + 8]byte
	sum := frameHMAC(secret, appendLeaseFields(append(msg[:0], leaseKeyLabel...), l, 0))
	return LeaseKey(sum[:len(LeaseKey{})])
}

// leasing is what a relay checks keeps with; Listen sets it, once.
type leasing struct {
	secret []byte
	keep   func(Keep, netip.AddrPort) bool
}

// Lease issues a lease of ep to id for ttl, for a node that proved id's
// key on a connection to this relay, and that ep derives from it. It
// returns false before Listen (the secret comes from the relay's key) or
// without a keep handler.
func (r *Relay) Lease(id identity.ID, ep Endpoint, device bool, ttl time.Duration) (Lease, bool) {
	lg := r.leasing.Load()
	if lg == nil || lg.keep == nil {
		return Lease{}, false
	}
	l := Lease{Endpoint: ep, ID: id, Device: device, Expires: uint64(time.Now().Add(ttl).Unix())}
	l.Key = leaseKeyOf(lg.secret, l)
	return l, true
}

// SetKeepHandler sets what the relay asks about every keep whose MAC
// holds and whose lease has not expired: keep returns whether it took it,
// and the relay answers with a kept frame only then. keep runs on the
// socket's reader goroutine and must not block. Set it before Listen.
func (r *Relay) SetKeepHandler(keep func(k Keep, from netip.AddrPort) bool) {
	r.onKeep = keep
}

// keep takes one keep frame from the socket.
func (r *Relay) keep(f []byte, from netip.AddrPort) {
	k, ok := parseKeep(f)
	lg := r.leasing.Load()
	if !ok || lg == nil || lg.keep == nil || k.Expires < uint64(time.Now().Unix()) {
		r.Dropped.Add(1)
		return
	}
	key := leaseKeyOf(lg.secret, Lease{Endpoint: k.Endpoint, ID: k.ID, Device: k.Device, Expires: k.Expires})
	if !frameMACValid(f, key[:]) {
		r.Dropped.Add(1)
		return
	}
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if !lg.keep(k, from) {
		r.Dropped.Add(1)
		return
	}
	var b [keptLen]byte
	_ = r.sock.WriteTo(appendKept(b[:0], k.Endpoint, k.Seq, key), from)
}

// leaseKeeping is the lease a node keeps, and the relay it keeps it at.
type leaseKeeping struct {
	relay netip.AddrPort
	lease Lease
}

// KeepLease sends keep seq of lease l to the relay at addr. From then on
// until the next KeepLease or ReleaseLease, kept frames from addr that
// answer l are delivered on Kept.
func (n *Node) KeepLease(addr netip.AddrPort, l Lease, seq uint64) error {
	return n.sendKeep(addr, l, seq, false)
}

// ReleaseLease is KeepLease for a keep that ends the registration.
func (n *Node) ReleaseLease(addr netip.AddrPort, l Lease, seq uint64) error {
	return n.sendKeep(addr, l, seq, true)
}

func (n *Node) sendKeep(addr netip.AddrPort, l Lease, seq uint64, release bool) error {
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	n.lease.Store(&leaseKeeping{relay: addr, lease: l})
	var b [keepLen]byte
	return n.sock.WriteTo(appendKeep(b[:0], l, seq, release), addr)
}

// Kept delivers the seq of each kept frame that answers the lease of the
// last KeepLease. Its one reader is the owner of the node's rendezvous
// sessions; answers that find it busy are dropped, and the next keep
// brings another.
func (n *Node) Kept() <-chan uint64 { return n.kept }

// receiveKept takes a kept frame.
func (n *Node) receiveKept(b []byte, from netip.AddrPort) {
	lk := n.lease.Load()
	if lk == nil || netip.AddrPortFrom(from.Addr().Unmap(), from.Port()) != lk.relay {
		return
	}
	seq, ok := parseKept(b, lk.lease)
	if !ok {
		return
	}
	select {
	case n.kept <- seq:
	default:
	}
}

// Package wire is the registry protocol, spoken on a node's outer QUIC
// connection to its rendezvous node: the one description of its messages,
// with the code that builds and parses them, for both halves (the client
// in package resolver, the server in package registry).
//
// The node learns nothing about the relay's identity from this protocol and
// the relay nothing about the node's: both come from the TLS handshake of
// that connection (a node cannot register an ID whose key it does not hold).
//
// Every request opens its own bidirectional stream; the node writes one
// request and closes its send side, the relay writes one response and
// closes. Integers are big-endian.
//
//	request
//	  type     uint8    1 register, 2 lookup, 3 ping
//	  bodyLen  uint16   at most MaxBody
//	  body     [bodyLen]byte
//
//	response
//	  status   uint8    see Status*
//	  bodyLen  uint16
//	  body     [bodyLen]byte
//
//	register body:  endpoint uint64 | flags uint8 (bit 0: the node publishes
//	                ports and may be looked up; bit 1: it asks for a lease)
//	                | nonce [16]byte, which derives endpoint from the
//	                node's key (transport.DeriveEndpoint): the relay
//	                refuses any other, so an endpoint can be registered
//	                only by its key
//	register reply: the node's address as the relay sees it, as text; or,
//	                to a node that asked for a lease and got one:
//	                0x00 | expires uint64 | ttl uint32 (seconds) |
//	                key [16]byte | the address, as text. (An address
//	                never starts with a zero byte; a relay that grants no
//	                lease, or predates them, sends the text alone.)
//	lookup body:    id [32]byte
//	lookup reply:   StatusOK: endpoint uint64; StatusRedirect: endpoint
//	                uint64 | home node ID [32]byte | home node advertise
//	                address, as text; StatusNotFound, StatusUnavailable,
//	                StatusBusy: no body
//	ping body:      any bytes (nodes send PingLen, see below); reply: empty
//
// Nodes ping their relay every transport.RelayPing. An unanswered ping ends
// the connection at once (the relay is gone; redial) instead of after the
// idle timeout; and a ping reaching a relay that restarted is big enough
// for the relay to answer with a QUIC stateless reset (quic-go sends none
// to packets under 42 bytes, and its own keep-alive PINGs are smaller), so
// a restarted relay is noticed within one ping.
//
// Several rendezvous nodes (relay --registry redis://…) share presence in
// Redis; a device is homed on the node it registered with. Decision:
// redirect, not forward. A lookup on node B for a device homed on node A
// answers StatusRedirect with A's ID and advertise address and the
// device's endpoint; the client opens an outer connection to A as well
// (registering there as a non-device node with its same endpoint) and sends
// that peer's relay frames via A. B then carries nothing for that pair: no
// node-to-node links, no second relay hop, and the relayed path is as short
// as with one node. The price is one more outer connection on the client,
// kept only while it is used. StatusUnavailable answers a lookup for a
// device not held by the node when the shared registry cannot be asked.
//
// A node registers once per connection, before anything else it expects
// to be reachable for; the registration lasts as long as the connection,
// unless the relay leased it (transport/lease.go). A leased registration
// outlives its connection, which the node then closes: it lasts while the
// node keeps it with keep frames, until the lease's ttl runs out; the node
// registers again (a new connection, a new lease) when half of it has.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// Request types.
const (
	ReqRegister = 1
	ReqLookup   = 2
	ReqPing     = 3
)

// Response statuses.
const (
	StatusOK         = 0
	StatusNotFound   = 1
	StatusBadRequest = 2
	StatusConflict   = 3
	StatusInternal   = 4
	// StatusRedirect: the device is homed on another node (see above).
	StatusRedirect = 5
	// StatusUnavailable: the shared registry (Redis) is unreachable and
	// the device is not held by this node.
	StatusUnavailable = 6
	// StatusBusy: a limit of the node refused the request (too many
	// lookups from this key, too many nodes registered); try later.
	StatusBusy = 7
)

const (
	flagPublishes = 1 << 0
	flagLease     = 1 << 1

	// MaxBody bounds a message body.
	MaxBody = 4096
	// PingLen is the size of a ping body (see above).
	PingLen = 32
	// RequestTimeout bounds one request, from opening its stream to the
	// end of its response, on either side.
	RequestTimeout = 10 * time.Second
)

// ErrMalformed is returned for a message that does not parse.
var ErrMalformed = errors.New("malformed registry message")

// WriteMsg writes one request or response: a leading byte (type or
// status), then the body.
func WriteMsg(w io.Writer, lead byte, body []byte) error {
	if len(body) > MaxBody {
		return fmt.Errorf("registry message body of %d bytes exceeds %d", len(body), MaxBody)
	}
	b := make([]byte, 0, 3+len(body))
	b = append(b, lead)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	b = append(b, body...)
	_, err := w.Write(b)
	return err
}

// ReadMsg reads one request or response.
func ReadMsg(r io.Reader) (lead byte, body []byte, err error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	if n > MaxBody {
		return 0, nil, fmt.Errorf("%w: body of %d bytes exceeds %d", ErrMalformed, n, MaxBody)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return hdr[0], body, nil
}

// StatusText names a status for messages.
func StatusText(s byte) string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusNotFound:
		return "not found"
	case StatusBadRequest:
		return "bad request"
	case StatusConflict:
		return "conflict"
	case StatusInternal:
		return "internal error"
	case StatusRedirect:
		return "redirect"
	case StatusUnavailable:
		return "registry unavailable"
	case StatusBusy:
		return "busy"
	}
	return fmt.Sprintf("status %d", s)
}

// registerLen is the size of a register body.
const registerLen = 8 + 1 + len(transport.EndpointNonce{})

// Register is a register request.
type Register struct {
	Endpoint  transport.Endpoint
	Nonce     transport.EndpointNonce
	Publishes bool
	Lease     bool // the node asks for a lease
}

// Body is the body of the register request.
func (r Register) Body() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, registerLen), uint64(r.Endpoint))
	var flags byte
	if r.Publishes {
		flags |= flagPublishes
	}
	if r.Lease {
		flags |= flagLease
	}
	b = append(b, flags)
	return append(b, r.Nonce[:]...)
}

// ParseRegister parses the body of a register request. It checks the
// form only: whether the nonce derives the endpoint for the registering
// key is the server's to check.
func ParseRegister(body []byte) (Register, error) {
	var r Register
	if len(body) != registerLen {
		return r, fmt.Errorf("%w: register body of %d bytes, want %d", ErrMalformed, len(body), registerLen)
	}
	r.Endpoint = transport.Endpoint(binary.BigEndian.Uint64(body[:8]))
	if r.Endpoint == 0 {
		return r, fmt.Errorf("%w: endpoint 0", ErrMalformed)
	}
	r.Publishes = body[8]&flagPublishes != 0
	r.Lease = body[8]&flagLease != 0
	copy(r.Nonce[:], body[9:])
	return r, nil
}

// ObservedBody is the body of a register reply: the address the relay saw
// the node at.
func ObservedBody(addr netip.AddrPort) []byte { return []byte(addr.String()) }

// Grant is the lease part of a register reply.
type Grant struct {
	Expires uint64        // the relay's, for the keeps
	TTL     time.Duration // how long the lease lasts, in whole seconds
	Key     transport.LeaseKey
}

// grantLen is the lease part of a register reply, with its leading zero.
const grantLen = 1 + 8 + 4 + len(transport.LeaseKey{})

// GrantBody is the body of a register reply that grants g.
func GrantBody(addr netip.AddrPort, g Grant) []byte {
	b := append(make([]byte, 0, grantLen+len("[ffff::ffff]:65535")), 0)
	b = binary.BigEndian.AppendUint64(b, g.Expires)
	b = binary.BigEndian.AppendUint32(b, uint32(g.TTL/time.Second))
	b = append(b, g.Key[:]...)
	return append(b, addr.String()...)
}

// ParseRegistered parses the body of a register reply: the observed
// address, and the lease if the reply grants one (nil otherwise).
func ParseRegistered(body []byte) (netip.AddrPort, *Grant, error) {
	if len(body) == 0 || body[0] != 0 {
		ap, err := ParseObserved(body)
		return ap, nil, err
	}
	if len(body) < grantLen {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: lease grant of %d bytes", ErrMalformed, len(body))
	}
	g := &Grant{Expires: binary.BigEndian.Uint64(body[1:9]),
		TTL: time.Duration(binary.BigEndian.Uint32(body[9:13])) * time.Second}
	copy(g.Key[:], body[13:grantLen])
	if g.TTL <= 0 {
		return netip.AddrPort{}, nil, fmt.Errorf("%w: lease of no time", ErrMalformed)
	}
	ap, err := ParseObserved(body[grantLen:])
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	return ap, g, nil
}

// ParseObserved parses the body of a register reply without a lease.
func ParseObserved(body []byte) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(string(body))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: observed address: %w", ErrMalformed, err)
	}
	return ap, nil
}

// LookupBody is the body of a lookup request.
func LookupBody(id identity.ID) []byte { return append([]byte(nil), id[:]...) }

// ParseLookup parses the body of a lookup request.
func ParseLookup(body []byte) (identity.ID, error) {
	var id identity.ID
	if len(body) != len(id) {
		return id, fmt.Errorf("%w: lookup body of %d bytes", ErrMalformed, len(body))
	}
	copy(id[:], body)
	return id, nil
}

// Found is the answer to a lookup of an online device.
type Found struct {
	Endpoint transport.Endpoint
	// Home and HomeAddr name the rendezvous node the device is homed on
	// when it is another than the one asked (StatusRedirect); zero when
	// the device is homed on the node asked.
	Home     identity.ID
	HomeAddr string
}

// FoundReply is the status and body of the reply to a lookup that found f.
func FoundReply(f Found) (status byte, body []byte) {
	body = binary.BigEndian.AppendUint64(nil, uint64(f.Endpoint))
	if f.Home.IsZero() {
		return StatusOK, body
	}
	body = append(body, f.Home[:]...)
	return StatusRedirect, append(body, f.HomeAddr...)
}

// ParseFound parses the body of a StatusOK or StatusRedirect lookup reply.
func ParseFound(status byte, body []byte) (Found, error) {
	var f Found
	switch {
	case status == StatusOK && len(body) == 8:
	case status == StatusRedirect && len(body) > 8+len(f.Home):
		copy(f.Home[:], body[8:])
		f.HomeAddr = string(body[8+len(f.Home):])
		// A zero home would read as "homed on the node asked": the
		// redirect would quietly turn into an OK for another node's
		// device. No node holds a weak key either (identity.ID.Weak).
		if f.Home.Weak() {
			return Found{}, fmt.Errorf("%w: redirect to weak key %s", ErrMalformed, f.Home)
		}
	default:
		return f, fmt.Errorf("%w: lookup reply %s of %d bytes", ErrMalformed, StatusText(status), len(body))
	}
	f.Endpoint = transport.Endpoint(binary.BigEndian.Uint64(body))
	if f.Endpoint == 0 {
		return f, fmt.Errorf("%w: endpoint 0", ErrMalformed)
	}
	return f, nil
}

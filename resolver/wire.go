package resolver

// The registry protocol, spoken on a node's outer QUIC connection to its
// rendezvous node. The node learns nothing about the relay's identity from
// this protocol and the relay nothing about the node's: both come from the
// TLS handshake of that connection (a node cannot register an ID whose key
// it does not hold).
//
// Every request opens its own bidirectional stream; the node writes one
// request and closes its send side, the relay writes one response and
// closes. Integers are big-endian.
//
//	request
//	  type     uint8    1 register, 2 lookup, 3 ping
//	  bodyLen  uint16   at most maxBody
//	  body     [bodyLen]byte
//
//	response
//	  status   uint8    see status*
//	  bodyLen  uint16
//	  body     [bodyLen]byte
//
//	register body:  endpoint uint64 | flags uint8 (bit 0: the node publishes
//	                ports and may be looked up)
//	register reply: the node's address as the relay sees it, as text
//	lookup body:    id [32]byte
//	lookup reply:   endpoint uint64 (statusNotFound, statusUnavailable: no
//	                body); statusRedirect: endpoint uint64 | home node ID
//	                [32]byte | home node advertise address, as text
//	ping body:      any bytes (nodes send 32, see below); reply: empty
//
// Nodes ping their relay every transport.RelayPing. An unanswered ping ends the
// connection at once (the relay is gone; redial) instead of after the idle
// timeout; and a ping reaching a relay that restarted is big enough for
// the relay to answer with a QUIC stateless reset (quic-go sends none to
// packets under 42 bytes, and its own keep-alive PINGs are smaller), so a
// restarted relay is noticed within one ping.
//
// Several rendezvous nodes (relay --registry redis://…) share presence in
// Redis; a device is homed on the node it registered with. Decision:
// redirect, not forward. A lookup on node B for a device homed on node A
// answers statusRedirect with A's ID and advertise address and the
// device's endpoint; the client opens an outer connection to A as well
// (registering there as a non-device node with its same endpoint) and sends
// that peer's relay frames via A. B then carries nothing for that pair: no
// node-to-node links, no second relay hop, and the relayed path is as short
// as with one node. The price is one more outer connection on the client,
// kept only while it is used. statusUnavailable answers a lookup for a
// device not held by the node when the shared registry cannot be asked.
//
// A node registers once per connection, before anything else it expects
// to be reachable for; the registration lasts as long as the connection.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

const (
	reqRegister = 1
	reqLookup   = 2
	reqPing     = 3

	statusOK         = 0
	statusNotFound   = 1
	statusBadRequest = 2
	statusConflict   = 3
	statusInternal   = 4
	// statusRedirect: the device is homed on another node (see above).
	statusRedirect = 5
	// statusUnavailable: the shared registry (Redis) is unreachable and
	// the device is not held by this node.
	statusUnavailable = 6

	flagPublishes = 1 << 0

	maxBody = 4096
)

var errMalformed = errors.New("malformed registry message")

// writeMsg writes one request or response: a leading byte, then the body.
func writeMsg(w io.Writer, lead byte, body []byte) error {
	if len(body) > maxBody {
		return fmt.Errorf("registry message body of %d bytes exceeds %d", len(body), maxBody)
	}
	b := make([]byte, 0, 3+len(body))
	b = append(b, lead)
	b = binary.BigEndian.AppendUint16(b, uint16(len(body)))
	b = append(b, body...)
	_, err := w.Write(b)
	return err
}

// readMsg reads one request or response.
func readMsg(r io.Reader) (lead byte, body []byte, err error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	n := int(binary.BigEndian.Uint16(hdr[1:]))
	if n > maxBody {
		return 0, nil, fmt.Errorf("%w: body of %d bytes exceeds %d", errMalformed, n, maxBody)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("%w: %w", errMalformed, err)
	}
	return hdr[0], body, nil
}

func statusText(s byte) string {
	switch s {
	case statusOK:
		return "ok"
	case statusNotFound:
		return "not found"
	case statusBadRequest:
		return "bad request"
	case statusConflict:
		return "conflict"
	case statusInternal:
		return "internal error"
	case statusRedirect:
		return "redirect"
	case statusUnavailable:
		return "registry unavailable"
	}
	return fmt.Sprintf("status %d", s)
}

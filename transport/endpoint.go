package transport

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strconv"
)

// Endpoint names one running node process at its relay. A node picks a
// random Endpoint when it starts and keeps it across reconnects, so that
// end-to-end connections addressed to it survive a relay restart; two
// processes with the same key (socksd and `tunnel connect` on one laptop)
// have different Endpoints and do not steal each other's packets.
type Endpoint uint64

// NewEndpoint returns a random non-zero Endpoint.
func NewEndpoint() Endpoint {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		if ep := Endpoint(binary.BigEndian.Uint64(b[:])); ep != 0 {
			return ep
		}
	}
}

func (e Endpoint) String() string { return fmt.Sprintf("%016x", uint64(e)) }

// ParseEndpoint parses the String form.
func ParseEndpoint(s string) (Endpoint, error) {
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("malformed endpoint %q", s)
	}
	return Endpoint(v), nil
}

// EndpointAddr is the net.Addr of a peer on a node's end-to-end QUIC
// transport. It names the peer process, not a path: the packets may cross a
// relay today and a direct path tomorrow while QUIC sees one address.
// quic-go compares non-UDP addresses by String on every packet, so the
// string is made once.
type EndpointAddr struct {
	ep Endpoint
	s  string
}

// NewEndpointAddr returns the address of ep.
func NewEndpointAddr(ep Endpoint) *EndpointAddr { return &EndpointAddr{ep, ep.String()} }

// Endpoint returns the endpoint the address names.
func (a *EndpointAddr) Endpoint() Endpoint { return a.ep }

// Network implements net.Addr.
func (*EndpointAddr) Network() string { return "tunnel" }

func (a *EndpointAddr) String() string { return a.s }

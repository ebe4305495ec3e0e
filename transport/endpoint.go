package transport

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net"
	"strconv"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Endpoint names one running node process at its relay. A node picks an
// Endpoint when it starts and keeps it across reconnects, so that
// end-to-end connections addressed to it survive a relay restart; two
// processes with the same key (socksd and `tunnel connect` on one laptop)
// have different Endpoints and do not steal each other's packets.
//
// An Endpoint is bound to its node's key: it is the first 64 bits of
// SHA-256 over a label, the node's ID and a random nonce the node picked
// (DeriveEndpoint). A relay accepts a registration only for the Endpoint
// the registering key and its nonce derive, so no one can take or block
// another key's Endpoint — finding a nonce that derives someone else's
// under one's own key costs 2^64 hashes — although lookups make every
// device's Endpoint public.
type Endpoint uint64

// EndpointNonce is the random part of an Endpoint's derivation.
type EndpointNonce [16]byte

// endpointLabel separates Endpoint derivation from every other use of
// SHA-256 over an ID.
const endpointLabel = "tunnel endpoint v1"

// DeriveEndpoint returns the Endpoint id's node has with nonce; zero if
// the nonce derives zero, which is no Endpoint.
func DeriveEndpoint(id identity.ID, nonce EndpointNonce) Endpoint {
	h := sha256.New()
	h.Write([]byte(endpointLabel))
	h.Write(id[:])
	h.Write(nonce[:])
	return Endpoint(binary.BigEndian.Uint64(h.Sum(nil)))
}

// NewEndpoint picks a random nonce and returns the Endpoint it derives for
// id, never zero.
func NewEndpoint(id identity.ID) (Endpoint, EndpointNonce) {
	for {
		var nonce EndpointNonce
		_, _ = rand.Read(nonce[:])
		if ep := DeriveEndpoint(id, nonce); ep != 0 {
			return ep, nonce
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

// EndpointAddr returns the address a peer Endpoint has on a node's
// end-to-end QUIC transport: [100::EP]:1, the Endpoint's 64 bits as the
// interface identifier in 100::/64, the discard-only block (RFC 6666), so
// it can never name a real host. It names the peer process, not a path: the
// packets may cross a relay today and a direct path tomorrow while QUIC
// sees one address. It is a *net.UDPAddr because quic-go hands the packets
// of a conn that looks like a UDP socket to WriteMsgUDP, which takes one
// (innerconn.go).
func EndpointAddr(ep Endpoint) *net.UDPAddr {
	var ip [16]byte
	ip[0] = 0x01
	binary.BigEndian.PutUint64(ip[8:], uint64(ep))
	return &net.UDPAddr{IP: ip[:], Port: 1}
}

// AddrEndpoint returns the Endpoint an address made by EndpointAddr names.
func AddrEndpoint(a net.Addr) (Endpoint, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok || ua.Port != 1 || len(ua.IP) != 16 || ua.IP[0] != 0x01 || binary.BigEndian.Uint64(ua.IP[:8]) != 0x0100<<48 {
		return 0, false
	}
	ep := Endpoint(binary.BigEndian.Uint64(ua.IP[8:]))
	return ep, ep != 0
}

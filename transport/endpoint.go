package transport

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
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

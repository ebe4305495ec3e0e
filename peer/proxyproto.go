package peer

// The PROXY protocol v2 header the agent can send to a local service before
// the client's bytes, so the service knows who is calling (opt-in per port,
// `-proxy-protocol PORT`). Layout (haproxy's proxy-protocol.txt, §2.2):
//
//	signature  [12]byte  \r\n\r\n\0\r\nQUIT\n
//	ver_cmd    uint8     0x21: version 2, PROXY
//	fam        uint8     0x00: AF_UNSPEC — a tunnel has no client IP worth
//	                     passing; the identity is the key, in the TLV below
//	len        uint16    big-endian, bytes of TLVs that follow
//	TLV        type 0xE0 (PP2_TYPE_MIN_CUSTOM), len uint16, value: the
//	           client's 52-character node ID in ASCII
//	TLV        type 0xE1, len 1, value: the port's access mode
//	           (0 public, 1 private, 2 protected)
//
// A service that reads the header gets the client's ID, verified by the
// agent against the end-to-end connection's key.

import (
	"encoding/binary"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// PROXY protocol v2 TLV types used by the agent.
const (
	TLVClientID = 0xE0
	TLVAccess   = 0xE1
)

var proxySignature = []byte("\r\n\r\n\x00\r\nQUIT\n")

// AppendProxyHeader appends a PROXY v2 header naming client.
func AppendProxyHeader(b []byte, client identity.ID, access Access) []byte {
	id := client.String()
	tlvLen := 3 + len(id) + 3 + 1
	b = append(b, proxySignature...)
	b = append(b, 0x21, 0x00)
	b = binary.BigEndian.AppendUint16(b, uint16(tlvLen))
	b = append(b, TLVClientID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(id)))
	b = append(b, id...)
	b = append(b, TLVAccess, 0, 1, byte(access))
	return b
}

package portmap

// PCP (RFC 6887), the MAP opcode for UDP: one request and its response, to
// the gateway's port 5351, all integers big-endian, addresses 16 bytes
// (IPv4 as IPv4-mapped IPv6). No options are sent; those a response
// carries after its 60 bytes are skipped.
//
//	MAP request (60 bytes)
//	  version   uint8     2
//	  opcode    uint8     1 (MAP; the top bit, R, is 0 in a request)
//	  reserved  uint16    0
//	  lifetime  uint32    seconds; 0 deletes the mapping
//	  client    [16]byte  this host's address, as the gateway sees it
//	  nonce     [12]byte  random, the same for every request on a mapping
//	  protocol  uint8     17 (UDP)
//	  reserved  [3]byte
//	  internal  uint16    the port on this host
//	  external  uint16    the public port wished for (0: any)
//	  extaddr   [16]byte  the public address wished for (::ffff:0.0.0.0: any)
//
//	MAP response (60 bytes and options)
//	  version   uint8     2
//	  opcode    uint8     0x81 (R set, MAP)
//	  reserved  uint8
//	  result    uint8     0 success (see ResultError)
//	  lifetime  uint32    seconds granted (on an error: how long it holds)
//	  epoch     uint32
//	  reserved  [12]byte
//	  nonce     [12]byte  the request's
//	  protocol  uint8     17
//	  reserved  [3]byte
//	  internal  uint16
//	  external  uint16    the public port granted
//	  extaddr   [16]byte  the public address granted

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

const (
	pcpVersion   = 2
	pcpOpMap     = 1
	pcpReplyBit  = 0x80
	pcpMapLen    = 60
	pcpMaxLen    = 1100 // RFC 6887 §7: no PCP message is longer
	protoUDP     = 17
	pcpUnsuppVer = 1
)

// pcpMapRequest builds a MAP request for UDP port internal of client.
func pcpMapRequest(client netip.Addr, nonce [12]byte, internal, external uint16, lifetime uint32) []byte {
	b := make([]byte, 0, pcpMapLen)
	b = append(b, pcpVersion, pcpOpMap, 0, 0)
	b = binary.BigEndian.AppendUint32(b, lifetime)
	c := client.As16() // IPv4 comes out mapped
	b = append(b, c[:]...)
	b = append(b, nonce[:]...)
	b = append(b, protoUDP, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, internal)
	b = binary.BigEndian.AppendUint16(b, external)
	any4 := netip.IPv4Unspecified().As16()
	return append(b, any4[:]...)
}

// pcpMapResponse is a parsed MAP response.
type pcpMapResponse struct {
	lifetime           uint32
	epoch              uint32
	nonce              [12]byte
	internal, external uint16
	addr               netip.Addr // unmapped
}

// pcpParseMap parses a MAP response. It returns errResponse for what is
// not one (to be ignored), errUnsupportedVersion when the gateway speaks
// only NAT-PMP (or an older PCP), and a *ResultError for a refusal.
func pcpParseMap(b []byte) (pcpMapResponse, error) {
	if len(b) >= 4 && b[0] == 0 && b[1] == natpmpReply+pcpOpMap &&
		binary.BigEndian.Uint16(b[2:4]) == natpmpUnsuppVersion {
		return pcpMapResponse{}, errUnsupportedVersion // NAT-PMP's answer to version 2
	}
	if len(b) < 4 || b[1] != pcpReplyBit|pcpOpMap {
		return pcpMapResponse{}, errResponse
	}
	if b[0] != pcpVersion {
		if b[3] == pcpUnsuppVer {
			return pcpMapResponse{}, errUnsupportedVersion
		}
		return pcpMapResponse{}, errResponse
	}
	if len(b) > pcpMaxLen || len(b)%4 != 0 {
		return pcpMapResponse{}, fmt.Errorf("%w: PCP response of %d bytes", errResponse, len(b))
	}
	if b[3] != 0 {
		return pcpMapResponse{}, &ResultError{Protocol: "PCP", Code: int(b[3])}
	}
	if len(b) < pcpMapLen {
		return pcpMapResponse{}, fmt.Errorf("%w: PCP MAP response of %d bytes", errResponse, len(b))
	}
	if b[36] != protoUDP {
		return pcpMapResponse{}, fmt.Errorf("%w: PCP MAP response for protocol %d", errResponse, b[36])
	}
	return pcpMapResponse{
		lifetime: binary.BigEndian.Uint32(b[4:8]),
		epoch:    binary.BigEndian.Uint32(b[8:12]),
		nonce:    [12]byte(b[24:36]),
		internal: binary.BigEndian.Uint16(b[40:42]),
		external: binary.BigEndian.Uint16(b[42:44]),
		addr:     netip.AddrFrom16([16]byte(b[44:60])).Unmap(),
	}, nil
}

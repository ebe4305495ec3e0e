package portmap

// NAT-PMP (RFC 6886), the UDP part: two requests and their responses, to
// the gateway's port 5351, all integers big-endian.
//
//	public address request (2 bytes)
//	  version  uint8    0
//	  opcode   uint8    0
//
//	public address response (12 bytes)
//	  version  uint8    0
//	  opcode   uint8    128
//	  result   uint16   0 success (see natpmpResult)
//	  epoch    uint32   seconds since the gateway's mapping table started
//	  address  [4]byte  the gateway's public IPv4 address
//
//	map UDP request (12 bytes)
//	  version  uint8    0
//	  opcode   uint8    1 (UDP)
//	  reserved uint16   0
//	  internal uint16   the port on this host
//	  external uint16   the public port wished for (0: any)
//	  lifetime uint32   seconds; 0 deletes the mapping of internal
//
//	map UDP response (16 bytes)
//	  version  uint8    0
//	  opcode   uint8    129
//	  result   uint16
//	  epoch    uint32
//	  internal uint16
//	  external uint16   the public port granted
//	  lifetime uint32   seconds granted
//
// A gateway that speaks only NAT-PMP answers a PCP request (version 2)
// with a NAT-PMP-format error: version 0, the request's opcode + 128,
// result 1 (unsupported version), at least 4 bytes. pcpParse recognizes it.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

const (
	natpmpOpAddr   = 0
	natpmpOpMapUDP = 1
	natpmpReply    = 128

	natpmpUnsuppVersion = 1
)

func natpmpAddrRequest() []byte { return []byte{0, natpmpOpAddr} }

func natpmpMapRequest(internal, external uint16, lifetime uint32) []byte {
	b := []byte{0, natpmpOpMapUDP, 0, 0}
	b = binary.BigEndian.AppendUint16(b, internal)
	b = binary.BigEndian.AppendUint16(b, external)
	return binary.BigEndian.AppendUint32(b, lifetime)
}

// natpmpAddrResponse is a parsed public address response.
type natpmpAddrResponse struct {
	epoch uint32
	addr  netip.Addr
}

// natpmpMapResponse is a parsed map UDP response.
type natpmpMapResponse struct {
	epoch              uint32
	internal, external uint16
	lifetime           uint32
}

// natpmpHeader checks a response's version, opcode and result; it returns
// errResponse for something that is not the response to op (to be
// ignored), and a *ResultError for a refusal.
func natpmpHeader(b []byte, op byte) error {
	if len(b) < 4 || b[0] != 0 || b[1] != natpmpReply+op {
		return errResponse
	}
	if r := binary.BigEndian.Uint16(b[2:4]); r != 0 {
		return &ResultError{Protocol: "NAT-PMP", Code: int(r)}
	}
	return nil
}

func natpmpParseAddr(b []byte) (natpmpAddrResponse, error) {
	if err := natpmpHeader(b, natpmpOpAddr); err != nil {
		return natpmpAddrResponse{}, err
	}
	if len(b) < 12 {
		return natpmpAddrResponse{}, fmt.Errorf("%w: NAT-PMP address response of %d bytes", errResponse, len(b))
	}
	return natpmpAddrResponse{
		epoch: binary.BigEndian.Uint32(b[4:8]),
		addr:  netip.AddrFrom4([4]byte(b[8:12])),
	}, nil
}

func natpmpParseMap(b []byte) (natpmpMapResponse, error) {
	if err := natpmpHeader(b, natpmpOpMapUDP); err != nil {
		return natpmpMapResponse{}, err
	}
	if len(b) < 16 {
		return natpmpMapResponse{}, fmt.Errorf("%w: NAT-PMP map response of %d bytes", errResponse, len(b))
	}
	return natpmpMapResponse{
		epoch:    binary.BigEndian.Uint32(b[4:8]),
		internal: binary.BigEndian.Uint16(b[8:10]),
		external: binary.BigEndian.Uint16(b[10:12]),
		lifetime: binary.BigEndian.Uint32(b[12:16]),
	}, nil
}

package transport

// Frames: every datagram on a node's UDP socket that is not an outer QUIC
// packet. All frame types share one first-byte space, declared here and
// nowhere else; integers are big-endian.
//
// The first byte of a frame has its two top bits clear, which a QUIC packet
// never has (RFC 9000 §17: long headers set 0x80, short headers set the
// fixed bit 0x40), so a socket tells frames from QUIC by one byte
// (Socket.read).
//
//	toRelay, node → relay (relay.go)
//	  type     uint8     0x01
//	  dst      [8]byte   Endpoint of the receiving node
//	  payload  …         one inner QUIC packet, opaque to the relay
//
//	fromRelay, relay → node (relay.go)
//	  type     uint8     0x02
//	  src      [8]byte   Endpoint of the sending node, stamped by the relay
//	  payload  …         the same bytes, unchanged
//
//	gone, relay → node (relay.go)
//	  type     uint8     0x03
//	  dst      [8]byte   an Endpoint the node sent to that is not attached
//
//	ping, node → node, straight over UDP (disco.go)
//	  type     uint8     0x04
//	  src      [8]byte   sender's Endpoint
//	  dst      [8]byte   receiver's Endpoint
//	  seq      uint64    the sender's ping counter for this peer: 1, 2, 3…;
//	                     the receiver answers each seq once (replayWindow)
//	  txid     [8]byte   random: the pong must echo it, which proves the
//	                     pong's sender got this ping at the address it went to
//	  rcvd     uint64    zero in a ping
//	  rcvdPkts uint64    zero in a ping
//	  mac      [16]byte  HMAC-SHA256(secret, all bytes before mac), truncated
//
//	pong, node → node (disco.go): the layout of ping with type 0x05, src
//	and dst swapped, the seq and txid of the ping it answers, and in rcvd
//	and rcvdPkts the payload bytes and the direct frames its sender has
//	received from the ping's sender so far (the liveness rule, disco.go).
//	The mac covers them: only the peer can say what reached it.
//
//	direct, node → node, straight over UDP (disco.go)
//	  type     uint8     0x06
//	  payload  …         one inner QUIC packet
//
//	keep, node → relay, and kept, relay → node: a registration held
//	without a connection (0x0A and 0x0B; their layout is in lease.go)
//
// toRelay and fromRelay have the same header size on purpose: the relay
// rewrites a header in place to forward a frame.
//
// The payload of a direct, toRelay or fromRelay frame is one inner QUIC
// packet, whose first byte has a top bit set, or one of these, whose first
// byte has both clear (pathsize.go and reassembly.go):
//
//	fragment: one half of an inner packet too big for the path
//	  type     uint8     0x07
//	  id       uint32    the sender's number for the packet
//	  index    uint8     0 (the first half) or 1
//	  data     …
//
//	sizeProbe: does the path carry a whole packet?
//	  type     uint8     0x08
//	  txid     [8]byte   random
//	  padding  …         zeros, to a payload of innerPacketSize
//
//	sizeAck: the answer, sent back the way the probe came
//	  type     uint8     0x09
//	  txid     [8]byte   the probe's
//
// The relay reads none of them: a payload is opaque to it.

import (
	"encoding/binary"
)

// Frame types.
const (
	frameToRelay   = 0x01
	frameFromRelay = 0x02
	frameGone      = 0x03
	frameDiscoPing = 0x04
	frameDiscoPong = 0x05
	frameDirect    = 0x06
)

// Payload types other than an inner QUIC packet.
const (
	payloadFragment  = 0x07
	payloadSizeProbe = 0x08
	payloadSizeAck   = 0x09
	sizeAckLen       = 1 + 8
)

const (
	// frameHeaderLen is the header of toRelay, fromRelay and gone.
	frameHeaderLen = 1 + 8
	// discoLen is the whole of a ping or pong.
	discoLen = 1 + 8 + 8 + 8 + 8 + 8 + 8 + 16
)

// discoMsg is a ping or pong.
type discoMsg struct {
	typ      byte
	src, dst Endpoint
	seq      uint64
	txid     uint64
	rcvd     counts // zero in a ping
}

// counts are inner packets on a direct path: payload bytes and frames.
type counts struct{ bytes, pkts uint64 }

func appendDisco(b []byte, m discoMsg, secret []byte) []byte {
	start := len(b)
	b = append(b, m.typ)
	b = binary.BigEndian.AppendUint64(b, uint64(m.src))
	b = binary.BigEndian.AppendUint64(b, uint64(m.dst))
	b = binary.BigEndian.AppendUint64(b, m.seq)
	b = binary.BigEndian.AppendUint64(b, m.txid)
	b = binary.BigEndian.AppendUint64(b, m.rcvd.bytes)
	b = binary.BigEndian.AppendUint64(b, m.rcvd.pkts)
	return appendFrameMAC(b, start, secret)
}

// parseDisco reads the header of a ping or pong without checking its MAC,
// so that the receiver can find the secret by the sender's Endpoint.
func parseDisco(b []byte) (discoMsg, bool) {
	if len(b) != discoLen || (b[0] != frameDiscoPing && b[0] != frameDiscoPong) {
		return discoMsg{}, false
	}
	return discoMsg{
		typ:  b[0],
		src:  Endpoint(binary.BigEndian.Uint64(b[1:9])),
		dst:  Endpoint(binary.BigEndian.Uint64(b[9:17])),
		seq:  binary.BigEndian.Uint64(b[17:25]),
		txid: binary.BigEndian.Uint64(b[25:33]),
		rcvd: counts{binary.BigEndian.Uint64(b[33:41]), binary.BigEndian.Uint64(b[41:49])},
	}, true
}

package transport

// Packet size: end-to-end packets are larger than QUIC's 1280-byte floor
// where the path carries them, and split in two where it does not.
//
// Every packet costs the same fixed work (quic-go's packing and
// acknowledging, header protection, a GSO segment, a queue slot) whatever
// its size, so bigger packets move more bytes per CPU second (BENCHMARKS.md
// has the figures). But quic-go's own path MTU discovery cannot be used:
// it never sees our path switches (innerconn.go), so a size it learned on
// a direct path would stay in use on a relay path that drops it. So
// quic-go sends packets of one fixed size, innerPacketSize, and the node
// makes every path carry them. A path is a direct address, or the relay a
// peer is reached through; for each, the node finds out which of these
// holds, with sizeProbe payloads (frame.go) that the peer answers, two at
// a time — one padded to innerPacketSize, one not:
//
//   - whole: a padded probe came back. Packets go whole.
//   - small: in sizeTries rounds no padded probe came back, an unpadded
//     one did: the peer is there and joins fragments, and the path drops
//     large datagrams (a link of a smaller MTU whose ICMP is filtered, so
//     the kernel never learns to fragment). Packets larger than
//     safePayload go as two fragment payloads, which any path that carries
//     QUIC's minimum does (reassembly.go); smaller ones go whole. They go
//     so as soon as an unpadded probe came back, before the verdict.
//   - mute: no probe came back. The peer is a node from before this
//     change (it takes whole packets of any size, and cannot join
//     fragments), or the path is dead. Packets go whole, as before.
//
// A path the kernel knows to be smaller than our datagrams (a WireGuard
// interface of 1420 bytes on the way: it refuses a GSO write as too big,
// socket.go) gets fragments too when the peer joins them, though probes
// pass it: the kernel would fragment each datagram, sent one by one, where
// our fragments leave in GSO runs.
//
// Until a probe comes back, a node sends packets whole. Before a
// connection is tracked — its handshake, when quic-go pads packets to the
// full size — packets larger than safePayload go both whole and as
// fragments: a peer takes whichever arrives first (quic-go drops the
// duplicate), so a handshake crosses a path that drops large datagrams,
// and one with an older peer, alike. Each path is probed when packets
// start going to it and again every sizeRecheck while they do; a verdict
// stays in force until the next one. Probes and acks are not counted as
// direct traffic (the liveness rule, disco.go): a probe lost for its size
// says nothing about whether the path is alive.
//
// What quic-go is given is unchanged otherwise: one packet size for the
// whole connection, no path MTU discovery, live migration by the node.

import (
	"crypto/rand"
	"encoding/binary"
	"net/netip"
	"time"
)

const (
	// innerPacketSize is the end-to-end QUIC packet size. 1,400 bytes
	// in a relay frame stay within a 1,460-byte path for IPv6 (1,457
	// bytes on the wire): PPPoE (1,492), DS-Lite and 6in4 tunnels
	// (1,460–1,480) carry it whole. It is even, so a run of full packets
	// splits into fragments of one size, which keeps GSO.
	innerPacketSize = 1400
	// safePayload is the largest payload every path that carries QUIC
	// carries whole: a 1,280-byte IPv6 packet less its IPv6 and UDP
	// headers and a relay frame's header.
	safePayload = 1280 - 48 - frameHeaderLen

	// sizeRetry is the wait for a round's acks before the next round;
	// sizeTries rounds without the padded probe's ack decide small or
	// mute. A verdict holds for sizeRecheck.
	sizeRetry   = time.Second
	sizeTries   = 3
	sizeRecheck = 2 * time.Minute
)

// sizeVerdict is what a node concluded of a path's size.
type sizeVerdict uint8

const (
	sizeUnknown sizeVerdict = iota
	sizeWhole
	sizeSmall
	sizeMute
)

// sizeState is what a node knows of one path's size: the direct address
// or the relay address to, the verdict and when it was reached, and the
// round of probes in flight. Guarded by the path's lock.
type sizeState struct {
	to       netip.AddrPort
	verdict  sizeVerdict
	at       time.Time // of the verdict
	padded   uint64    // txids of the round in flight; 0: none
	unpadded uint64
	sentAt   time.Time
	rounds   int  // sent since the last verdict
	answered bool // an unpadded probe of these rounds came back
}

// sizePlan is how a run of packets goes out on a path (sendSized): sz,
// whether the peer joins fragments (it answered a probe), and the txids
// of a round of probes to send with it (0: none).
type sizePlan struct {
	sz               sizing
	joins            bool
	padded, unpadded uint64
}

// sizeFor plans a run of packets to to on the path s is about: whole or
// as fragments, and a round of probes if one is due now. A new to starts
// over: nothing known.
func (p *path) sizeFor(s *sizeState, to netip.AddrPort, now time.Time) sizePlan {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.to != to {
		*s = sizeState{to: to}
	}
	var pl sizePlan
	if s.due(now) {
		var b [16]byte
		_, _ = rand.Read(b[:])
		s.padded = binary.BigEndian.Uint64(b[:8]) | 1 // never 0
		s.unpadded = binary.BigEndian.Uint64(b[8:]) | 1
		s.sentAt = now
		s.rounds++
		pl.padded, pl.unpadded = s.padded, s.unpadded
	}
	if s.fragments() {
		pl.sz = sendFragments
	}
	pl.joins = s.answered || s.verdict == sizeWhole || s.verdict == sizeSmall
	return pl
}

// fragments says whether large packets go as fragments: on a small path,
// and on one not judged yet where the peer answered only unpadded probes.
func (s *sizeState) fragments() bool {
	return s.verdict == sizeSmall || (s.verdict == sizeUnknown && s.answered)
}

// due says whether a round is due at now, and reaches the small or mute
// verdict when sizeTries rounds brought no padded probe back.
func (s *sizeState) due(now time.Time) bool {
	if s.padded != 0 && now.Sub(s.sentAt) < sizeRetry {
		return false // waiting for the acks
	}
	s.padded, s.unpadded = 0, 0
	if s.rounds >= sizeTries {
		s.verdict, s.at, s.rounds = sizeMute, now, 0
		if s.answered {
			s.verdict = sizeSmall
		}
		s.answered = false
		return false
	}
	return s.rounds > 0 || s.verdict == sizeUnknown || now.Sub(s.at) >= sizeRecheck
}

// packets describes s for people (PeerInfo.Packets), as of packets to to.
func (p *path) packets(s *sizeState, to netip.AddrPort) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case s.to != to:
		return "probing" // nothing sent there yet
	case s.fragments():
		return "fragments"
	case s.verdict == sizeWhole:
		return "whole"
	case s.verdict == sizeMute:
		return "unprobed"
	}
	return "probing"
}

// sizeAcked takes the ack of a probe to the direct address (relayed
// false) or through the relay.
func (p *path) sizeAcked(txid uint64, relayed bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := &p.sizeDirect
	if relayed {
		s = &p.sizeRelay
	}
	switch {
	case txid == 0:
	case txid == s.padded:
		s.verdict, s.at = sizeWhole, now
		s.padded, s.unpadded, s.rounds, s.answered = 0, 0, 0, false
	case txid == s.unpadded:
		s.answered = true
	}
}

// appendSizeProbe appends a probe of txid, padded to a payload of
// innerPacketSize or not.
func appendSizeProbe(b []byte, txid uint64, padded bool) []byte {
	b = append(b, payloadSizeProbe)
	b = binary.BigEndian.AppendUint64(b, txid)
	if padded {
		b = append(b, make([]byte, innerPacketSize-sizeAckLen)...)
	}
	return b
}

// appendSizeAck appends the ack of the probe probe.
func appendSizeAck(b []byte, probe []byte) []byte {
	b = append(b, payloadSizeAck)
	return append(b, probe[1:sizeAckLen]...)
}

// How sendSized sends packets larger than safePayload.
type sizing uint8

const (
	sendWhole sizing = iota
	sendFragments
	sendBoth // whole and as fragments: a path not tracked yet
)

// sendSized sends a run of packets to to with hdr before each, and the
// probes, as pl says. It returns the payload bytes and frames sent, what
// the liveness rule counts on a direct path.
func (n *Node) sendSized(sock *Socket, hdr, b []byte, seg int, to netip.AddrPort, pl sizePlan) (bytes, frames uint64) {
	if pl.padded != 0 {
		buf := append(make([]byte, 0, len(hdr)+innerPacketSize), hdr...)
		_ = sock.WriteTo(appendSizeProbe(buf, pl.padded, true), to)
		_ = sock.WriteTo(appendSizeProbe(buf, pl.unpadded, false), to)
	}
	sz := pl.sz
	if sz == sendWhole && pl.joins && seg > safePayload && sock.tooBig(to, len(hdr)+seg) {
		// The kernel knows the path is smaller than our datagrams (a
		// WireGuard link of 1420 bytes on the way) and refused a GSO
		// write: it would fragment each one, sent one by one. Our
		// fragments go in GSO runs instead.
		sz = sendFragments
	}
	if sz != sendFragments || seg <= safePayload {
		sock.WriteSegments(hdr, b, seg, to)
		bytes, frames = uint64(len(b)), uint64((len(b)+seg-1)/seg)
	}
	if sz != sendWhole && seg > safePayload {
		fb, ff := sock.writeFragments(hdr, b, seg, to, &n.fragID)
		bytes, frames = bytes+fb, frames+ff
	}
	return bytes, frames
}

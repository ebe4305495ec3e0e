package transport

// Direct paths: how two nodes find and keep a path that skips the relay.
//
// An end-to-end connection always starts on the relay, so its first byte
// never waits. Once the handshake is done both sides hold a secret only
// they know (the TLS exporter of that connection, label "tunnel disco v1"),
// and each tells the other its candidate addresses in a QUIC datagram on
// the connection itself (authenticated and encrypted end to end; no relay
// can add a false candidate):
//
//	candidates (QUIC datagram on the end-to-end connection)
//	  type     uint8    0x01
//	  count    uint8    at most maxCandidates
//	  count × { family uint8 (4 or 6) | addr [4 or 16]byte | port uint16 }
//
// A node's candidates are the address its relay saw it at (its public NAT
// mapping) and the addresses of its own interfaces with its socket's port
// (the same-LAN shortcut). Each side then sends pings (frame.go) from its
// one UDP socket — the one whose NAT mapping the relay saw — to every
// candidate of the other. Outbound pings open each side's NAT for the
// other's pings (hole punching); the first pong proves a path both ways.
// A ping or pong counts only if its MAC, keyed with the connection's
// secret, checks out.
//
// A data frame is accepted only from an address that sent a valid ping or
// pong for a live connection, and the inner QUIC packet inside is
// authenticated again by QUIC. Pongs count only from the address the ping
// went to, with a txid still outstanding, so a replayed pong cannot steer
// traffic elsewhere.
//
// Path choice: inner packets to a peer go over the direct path whose last
// pong is at most pathTrust old, otherwise over the relay. A confirmed
// path is pinged every pathHeartbeat (this also keeps NAT mappings open);
// while none is confirmed, all candidates are pinged with backoff up to
// probeInterval, forever, so a path that opens later (a firewall rule
// lifted, a NAT rebinding) is found. QUIC never sees the switch: its peer
// address is the Endpoint, so streams stay open when the path changes.

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

const (
	msgCandidates = 0x01
	maxCandidates = 16

	discoLabel = "tunnel disco v1"
)

func appendCandidates(b []byte, cands []netip.AddrPort) []byte {
	if len(cands) > maxCandidates {
		cands = cands[:maxCandidates]
	}
	b = append(b, msgCandidates, byte(len(cands)))
	for _, c := range cands {
		a := c.Addr().Unmap()
		if a.Is4() {
			v := a.As4()
			b = append(b, 4)
			b = append(b, v[:]...)
		} else {
			v := a.As16()
			b = append(b, 6)
			b = append(b, v[:]...)
		}
		b = binary.BigEndian.AppendUint16(b, c.Port())
	}
	return b
}

var errBadCandidates = errors.New("malformed candidates message")

func parseCandidates(b []byte) ([]netip.AddrPort, error) {
	if len(b) < 2 || b[0] != msgCandidates || int(b[1]) > maxCandidates {
		return nil, errBadCandidates
	}
	n := int(b[1])
	b = b[2:]
	out := make([]netip.AddrPort, 0, n)
	for range n {
		if len(b) < 1 {
			return nil, errBadCandidates
		}
		var a netip.Addr
		switch b[0] {
		case 4:
			if len(b) < 1+4+2 {
				return nil, errBadCandidates
			}
			a = netip.AddrFrom4([4]byte(b[1:5]))
			b = b[5:]
		case 6:
			if len(b) < 1+16+2 {
				return nil, errBadCandidates
			}
			a = netip.AddrFrom16([16]byte(b[1:17])).Unmap()
			b = b[17:]
		default:
			return nil, errBadCandidates
		}
		port := binary.BigEndian.Uint16(b[:2])
		b = b[2:]
		if port != 0 && a.IsValid() && !a.IsUnspecified() && !a.IsMulticast() {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	if len(b) != 0 {
		return nil, errBadCandidates
	}
	return out, nil
}

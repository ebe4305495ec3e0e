package transport

// Direct paths: how two nodes find and keep a path that skips the relay.
//
// An end-to-end connection always starts on the relay, so its first byte
// never waits. Once the handshake is done both sides hold a secret only
// they know (the TLS exporter of that connection, label "tunnel disco v2"),
// and each tells the other its candidate addresses in a QUIC datagram on
// the connection itself (authenticated and encrypted end to end; no relay
// can add a false candidate):
//
//	candidates (QUIC datagram on the end-to-end connection)
//	  type     uint8    0x01
//	  count    uint8    at most maxCandidates
//	  count × { family uint8 (4 or 6) | addr [4 or 16]byte | port uint16 }
//
// (Datagram types 0x02 and 0x03, for NATs that map per destination, are
// hardnat.go's.)
//
// A node's candidates are the address its relay saw it at (its public NAT
// mapping) and the addresses of its own interfaces with its socket's port
// (the same-LAN shortcut); loopback ones, and only those, for a node whose
// relay is on loopback, unless that relay serves other machines too
// (localrelay.go). Each side then sends pings (frame.go) from its
// one UDP socket — the one whose NAT mapping the relay saw — to every
// candidate of the other. Outbound pings open each side's NAT for the
// other's pings (hole punching); the first pong proves a path both ways.
// A ping or pong counts only if its MAC, keyed with the connection's
// secret, checks out.
//
// Strangers. Anyone may connect to a device, so a device must not become a
// packet cannon for whoever connects: it takes part only for connections
// it has reason to trust, only toward addresses in its own scope, and only
// at a bounded rate.
//
//   - Authorization first. On a connection a node dialed, discovery starts
//     at once (the dialer chose the key). On one it accepted, nothing
//     happens until the node is told the peer passed a policy
//     (Node.Authorized): no candidates are sent, no pings either, and the
//     peer's pings are neither answered nor remembered. A stranger gets
//     nothing from the device beyond QUIC itself.
//   - Scope. A peer's candidates, and the addresses its pings come from,
//     are kept only if this node could reach them anyway (scope.admits):
//     never multicast, broadcast, unspecified or link-local; loopback only
//     for a node whose relay is on loopback; private ranges (RFC 1918,
//     100.64/10, fc00::/7) only inside a prefix of one of this node's
//     interfaces. A peer cannot aim probes at this node's LAN or at
//     services on its loopback.
//   - Budget. Probe rounds ping at most maxPingsPerRound addresses, and
//     all connections of a node share one budget of probeRate pings a
//     second (bursts of probeBurst): no number of connections makes more.
//     Heartbeats to a confirmed path are outside the budget: they go only
//     to an address that echoed a random txid, that is to the peer itself.
//   - Replay. A ping's seq is a counter; the receiver answers each seq at
//     most once per connection secret (replayWindow: the highest seq seen
//     and the 64 below it, as IPsec and WireGuard do, so that pings of one
//     round overtaking each other on different paths all count). A ping
//     seen on the wire and sent again from elsewhere gets no pong and
//     makes nothing of its source address.
//
// A data frame is accepted only from an address that sent a fresh ping or
// answered one of ours, and the inner QUIC packet inside is authenticated
// again by QUIC. A pong counts only from the address its ping went to,
// echoing that ping's random txid while it is outstanding, so neither a
// replayed pong nor one forged by a peer that knows the secret (but not
// the txid) can steer traffic to another address.
//
// Path choice: inner packets to a peer go over the direct path whose last
// pong is at most pathTrust old, otherwise over the relay; between direct
// paths that both answer, the better one by RTT and family (family.go:
// IPv6 when about as fast as IPv4). A confirmed
// path is pinged every pathHeartbeat (this also keeps NAT mappings open);
// while none is confirmed, all candidates are pinged with backoff up to
// probeInterval, forever, so a path that opens later (a firewall rule
// lifted, a NAT rebinding) is found. QUIC never sees the switch: its peer
// address is the Endpoint, so streams stay open when the path changes.
//
// Liveness by what arrives, not by pongs. Something on the way that lets
// pings and pongs through but drops data (a middlebox dropping large
// packets, or someone who got between the two) would otherwise keep a
// dead path in use for as long as pongs come back. So each pong says, under
// its MAC, how many direct bytes and frames its sender has received from
// the pinger, and the pinger compares that with what it had sent direct
// when it sent the ping (which the ping trails on the same path). From the
// last good pong, the window's bytes sent and received are compared at
// every pong (path.judge):
//
//   - good if the peer received at least half of the bytes sent: the
//     window restarts there (ordinary loss, even heavy, is QUIC's to repair);
//   - dead if not, the window spans at least pathHeartbeat, and at least
//     deadPackets frames or deadBytes bytes are missing. Packets then go to
//     the relay at once, probing resumes, and the address is barred from
//     being the path for deadHold, doubling for each death up to
//     deadHoldMax, so that a black hole is not retaken every few seconds.
//
// A single lost packet never kills a path, nor does any loss of less than
// half; a path that carries nothing is never judged. A node with data to
// send leaves a black hole once QUIC has sent deadPackets frames into it
// and a heartbeat has passed: typically within two or three heartbeats of
// its start, about as long as a path whose pongs stop is trusted
// (pathTrust). Not sooner, because the window holding the start may still
// be half good, and because QUIC, which gets no acknowledgement from a
// hole, backs off and sends only a few packets a heartbeat into it. The
// peer whose only traffic into the hole is acknowledgements (of what now
// reaches it over the relay) leaves it as slowly as those trickle in.
//
// What stays possible: someone on the path who drops our data and sends
// as many bytes of garbage in its place, from the address the path uses,
// keeps the counts up. That costs it the bandwidth it steals, and QUIC,
// whose packets it cannot forge, still sees every loss.

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
)

const (
	msgCandidates = 0x01
	maxCandidates = 16

	discoLabel = "tunnel disco v2"
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

// scope is what a node may send disco packets to (see "Scope" above). It
// is a value: a node builds one from its interfaces now and then
// (Node.scope) and a test from a list of its own.
type scope struct {
	loopback bool           // the node's relay is on loopback
	nets     []netip.Prefix // the node's interface prefixes: address and netmask
	bcast    []netip.Addr   // the broadcast addresses of its IPv4 subnets
}

// privateRanges are addresses that mean something only on some network:
// reached only from a node with an interface inside the same prefix.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("100.64.0.0/10"), // carrier-grade NAT
	netip.MustParsePrefix("fc00::/7"),      // unique local
}

var limitedBroadcast = netip.AddrFrom4([4]byte{255, 255, 255, 255})

// newScope returns the scope of a node with these interface addresses
// (as net.InterfaceAddrs gives them); loopback says whether its relay is
// on loopback.
func newScope(loopback bool, ifaddrs []net.Addr) scope {
	s := scope{loopback: loopback}
	for _, p := range interfacePrefixes(ifaddrs) {
		pfx := p.Masked()
		s.nets = append(s.nets, pfx)
		if ones := pfx.Bits(); pfx.Addr().Is4() && ones <= 30 {
			v := pfx.Addr().As4()
			host := ^uint32(0) >> ones
			bc := binary.BigEndian.Uint32(v[:]) | host
			s.bcast = append(s.bcast, netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, bc))))
		}
	}
	return s
}

// interfacePrefixes turns interface addresses (as net.InterfaceAddrs gives
// them) into each address, unmapped, with its prefix length; those that
// are not an IP with a canonical mask are left out.
func interfacePrefixes(ifaddrs []net.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, ia := range ifaddrs {
		ipn, ok := ia.(*net.IPNet)
		if !ok {
			continue
		}
		a, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ones, bits := ipn.Mask.Size()
		if bits == 0 {
			continue // not a canonical mask
		}
		if a.Is4In6() && bits == 128 {
			ones -= 96
		}
		a = a.Unmap()
		if ones < 0 || ones > a.BitLen() {
			continue
		}
		out = append(out, netip.PrefixFrom(a, ones))
	}
	return out
}

// admits reports whether a is an address this node may ping or answer.
func (s scope) admits(a netip.Addr) bool {
	a = a.Unmap()
	switch {
	case !a.IsValid(), a.IsUnspecified(), a.IsMulticast(), a.IsLinkLocalUnicast(),
		a == limitedBroadcast, slices.Contains(s.bcast, a):
		return false
	case a.IsLoopback():
		return s.loopback
	}
	for _, r := range privateRanges {
		if r.Contains(a) {
			return slices.ContainsFunc(s.nets, func(p netip.Prefix) bool { return p.Contains(a) })
		}
	}
	return true
}

// admitted returns the addresses of as that s admits.
func (s scope) admitted(as []netip.AddrPort) []netip.AddrPort {
	return slices.DeleteFunc(as, func(a netip.AddrPort) bool { return !s.admits(a.Addr()) })
}

// replayWindow accepts each ping seq at most once: any seq above the
// highest seen, and those of the 64 below it not seen yet. One per
// connection secret, written under its path's lock.
type replayWindow struct {
	top  uint64 // the highest seq accepted; 0 before the first
	bits uint64 // bit i set: seq top-i accepted
}

func (w *replayWindow) accept(seq uint64) bool {
	switch {
	case seq == 0:
		return false
	case seq > w.top:
		if d := seq - w.top; d < 64 {
			w.bits <<= d
		} else {
			w.bits = 0
		}
		w.bits |= 1
		w.top = seq
		return true
	case w.top-seq >= 64:
		return false
	}
	bit := uint64(1) << (w.top - seq)
	if w.bits&bit != 0 {
		return false
	}
	w.bits |= bit
	return true
}

package transport

// IPv4 and IPv6 on one node.
//
// A node's socket is dual-stack when it listens on a wildcard address
// (":0", "0.0.0.0:7443", "[::]:7443": Go opens an AF_INET6 socket with
// IPV6_V6ONLY off), so one socket, one port and one set of NAT and firewall
// mappings serve both families. The kernel reports IPv4 peers of such a
// socket as IPv4-mapped IPv6 addresses (::ffff:a.b.c.d); the socket's
// reader unmaps them before anything sees them (Socket.read), and every
// address kept, compared, logged or sent as a candidate is in that unmapped
// form (netip.Addr.Unmap at each door: Relay.Attach, SetObserved, routes,
// the candidate codec), so an IPv4 peer of a dual-stack socket is the same
// address as it would be on an IPv4 socket.
//
// Happy eyeballs between the families (after RFC 8305): a dual-stack peer
// offers candidates of both, and a probe round pings both, interleaved
// (interleaveFamilies), so that neither waits for the other — a round
// capped at maxPingsPerRound never holds only one family. The first pong
// of either family confirms a path at once; a later pong of the other
// family takes over if it is the better one by the rule of betterPath,
// which prefers IPv6 when both answer within preferIPv6Within of each
// other: no NAT on the way, so its mappings do not expire under the path.

import (
	"net/netip"
	"time"
)

// preferIPv6Within is how much slower than the IPv4 path an IPv6 path may
// answer and still be preferred: more than the jitter of one round trip,
// less than the detour of an IPv6 path that is clearly the worse one (a
// tunnel through a far gateway).
const preferIPv6Within = 10 * time.Millisecond

// betterPath reports whether a path through a that answered in rtt should
// replace the fresh path in use through best, whose last RTT is bestRTT.
// Within a family only a clearly faster path wins (below 80 % of the RTT
// in use), so that small differences do not make the path flap. Across
// families IPv6 wins when within preferIPv6Within of IPv4, and IPv4 must
// beat IPv6 by that margin and then clearly: the two rules never both
// hold for one pair of RTTs, so the path cannot flap between families
// either.
func betterPath(a netip.AddrPort, rtt time.Duration, best netip.AddrPort, bestRTT time.Duration) bool {
	a6, best6 := is6(a), is6(best)
	switch {
	case a6 && !best6:
		return rtt <= bestRTT+preferIPv6Within
	case !a6 && best6:
		return rtt+preferIPv6Within < bestRTT*8/10
	}
	return rtt < bestRTT*8/10
}

// is6 reports whether a is an IPv6 address (an IPv4-mapped one is IPv4).
func is6(a netip.AddrPort) bool { return !a.Addr().Unmap().Is4() }

// interleaveFamilies returns as with IPv6 and IPv4 addresses alternating,
// starting with the family of as[0], each family in its order in as; what
// is left of the longer family comes last.
func interleaveFamilies(as []netip.AddrPort) []netip.AddrPort {
	if len(as) < 2 {
		return as
	}
	var first, second []netip.AddrPort
	f := is6(as[0])
	for _, a := range as {
		if is6(a) == f {
			first = append(first, a)
		} else {
			second = append(second, a)
		}
	}
	out := make([]netip.AddrPort, 0, len(as))
	for i := range max(len(first), len(second)) {
		if i < len(first) {
			out = append(out, first[i])
		}
		if i < len(second) {
			out = append(out, second[i])
		}
	}
	return out
}

// sendsTo reports whether a socket bound to local can send to a: a
// wildcard IPv6 socket (dual-stack) reaches both families, any other only
// its own. Probing an address the socket cannot reach would spend the
// probe budget on a write that fails.
func sendsTo(local, a netip.Addr) bool {
	local, a = local.Unmap(), a.Unmap()
	if local.Is6() && local.IsUnspecified() {
		return true
	}
	return local.Is4() == a.Is4()
}

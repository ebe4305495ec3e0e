package limit

import (
	"net"
	"net/netip"
)

// SourceOf is the key a client address counts against in per-source caps:
// the address itself for IPv4 (IPv4-mapped IPv6 included), its /64 for
// IPv6 — one subscriber's usual allocation — so that a host cannot escape
// its budget by hopping addresses. Addresses without an IP (nil, Unix
// sockets) share the zero Prefix.
func SourceOf(a net.Addr) netip.Prefix { return SourcePrefix(AddrIP(a)) }

// SourcePrefix is SourceOf for an IP already in hand.
func SourcePrefix(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits) // drops any zone
	return p
}

// AddrIP returns the IP of a connection's remote address, unmapped; the
// zero Addr if it has none.
func AddrIP(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

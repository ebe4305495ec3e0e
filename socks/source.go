package socks

import (
	"net"
	"net/netip"
	"strings"
	"time"
)

// What a client is, to the budgets and refusal reports that bound what it
// can cost before it is authorized: its source, and how its refusals are
// logged.

const (
	// refusalReportEvery is how often a refused source (or local user)
	// gets a log line: the first refusal, then one per interval with the
	// number not logged.
	refusalReportEvery = 10 * time.Second
	// refusalReportKeys bounds the sources a Reporter tracks.
	refusalReportKeys = 4096
)

// sourceOf is the budget a client address counts against: the address
// for IPv4 (IPv4-mapped IPv6 included), its /64 for IPv6, so that a host
// cannot escape its budget by hopping addresses. Addresses that are not
// TCP share one budget.
func sourceOf(a net.Addr) netip.Prefix {
	var ip netip.Addr
	if t, ok := a.(*net.TCPAddr); ok {
		ip = t.AddrPort().Addr().Unmap()
	} else if a != nil {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			ip = ap.Addr().Unmap()
		}
	}
	if !ip.IsValid() {
		return netip.Prefix{}
	}
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.WithZone("").Prefix(bits)
	return p
}

// trunc cuts what a stranger sent to n bytes for a log line.
func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

//go:build !linux

package transport

import (
	"errors"
	"net"
	"net/netip"
)

// Without Linux's UDP offloads every datagram is its own syscall.

func enableGRO(*net.UDPConn) bool { return false }

func writeGSO(*net.UDPConn, []byte, int, netip.AddrPort) error {
	return errors.ErrUnsupported
}

func gsoUnsupported(error) bool { return true }

func gsoTooBig(error) bool { return false }

func gsoOOB(int) []byte { return nil }

var groOOBSize = 0

// segmentSize is 0: quic-go segments only on Linux.
func segmentSize([]byte) int { return 0 }

func readGRO(c *net.UDPConn, b, _ []byte) (n, seg int, from netip.AddrPort, err error) {
	n, from, err = c.ReadFromUDPAddrPort(b)
	return n, n, from, err
}

// openProbe opens the socket quic-go's capability probes run on
// (innerconn.go); without Linux's offloads only DF and ECN are probed.
func openProbe() (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
}

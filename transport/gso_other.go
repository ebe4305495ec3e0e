//go:build !linux

package transport

import (
	"errors"
	"net"
	"net/netip"
)

// Without Linux's UDP offloads every datagram is its own syscall.

func enableGRO(*net.UDPConn) bool { return false }

func gsoUnsupported(error) bool { return true }

func gsoTooBig(error) bool { return false }

func gsoOOB(int) []byte { return nil }

var groOOBSize = 0

// segmentSize is 0: quic-go segments only on Linux.
func segmentSize([]byte) int { return 0 }

// udpIO is a socket's send and receive: the net package's calls.
type udpIO struct{ c *net.UDPConn }

func newUDPIO(c *net.UDPConn) (*udpIO, error) { return &udpIO{c}, nil }

// send sends b to to as one datagram; a GSO write (seg > 0) is
// unsupported.
func (u *udpIO) send(b []byte, seg int, to netip.AddrPort) error {
	if seg > 0 {
		return errors.ErrUnsupported
	}
	_, err := u.c.WriteToUDPAddrPort(b, to)
	return err
}

// udpReader is the receive state of a socket's one reader goroutine.
type udpReader struct{ c *net.UDPConn }

func (u *udpIO) reader() *udpReader { return &udpReader{u.c} }

// readGRO reads one datagram; without GRO, seg is its size.
func (r *udpReader) readGRO(b, _ []byte) (n, seg int, from netip.AddrPort, err error) {
	n, from, err = r.c.ReadFromUDPAddrPort(b)
	return n, n, from, err
}

// openProbe opens the socket quic-go's capability probes run on
// (innerconn.go); without Linux's offloads only DF and ECN are probed.
func openProbe() (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
}

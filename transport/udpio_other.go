//go:build !linux || 386

package transport

import (
	"errors"
	"net"
	"net/netip"
)

// udpIO is a socket's send and receive with the net package's calls:
// the hook-free ones (udpio_linux.go) need sendmsg and recvmsg as system
// calls of their own, which linux/386 reaches through socketcall.
type udpIO struct{ c *net.UDPConn }

func newUDPIO(c *net.UDPConn) (*udpIO, error) { return &udpIO{c}, nil }

// send sends b to to as one datagram, or, when seg > 0, as datagrams of
// seg bytes with one GSO write where the system has them.
func (u *udpIO) send(b []byte, seg int, to netip.AddrPort) error {
	if seg <= 0 {
		_, err := u.c.WriteToUDPAddrPort(b, to)
		return err
	}
	oob := gsoOOB(seg)
	if oob == nil {
		return errors.ErrUnsupported
	}
	_, _, err := u.c.WriteMsgUDPAddrPort(b, oob, to)
	return err
}

// udpReader is the receive state of a socket's one reader goroutine.
type udpReader struct{ c *net.UDPConn }

func (u *udpIO) reader() *udpReader { return &udpReader{u.c} }

// readGRO reads one (possibly coalesced) datagram; seg is the size of the
// datagrams it holds (n when there is one).
func (r *udpReader) readGRO(b, oob []byte) (n, seg int, from netip.AddrPort, err error) {
	n, oobn, _, from, err := r.c.ReadMsgUDPAddrPort(b, oob)
	if err != nil {
		return 0, 0, from, err
	}
	return n, groSegment(oob[:oobn], n), from, nil
}

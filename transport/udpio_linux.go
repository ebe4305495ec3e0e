//go:build linux && !386

package transport

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"unsafe"
)

// The socket's sendmsg and recvmsg skip the Go scheduler's system-call
// hooks; rawsyscall_linux.go says why.

// udpIO is a socket's hook-free send and receive.
type udpIO struct {
	rc  syscall.RawConn
	dom int // the socket's family: AF_INET or AF_INET6
}

func newUDPIO(c *net.UDPConn) (*udpIO, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw conn of udp socket: %w", err)
	}
	// A dual-stack socket takes IPv4 destinations as v4-mapped IPv6 ones;
	// an IPv4 socket takes only IPv4. The net package decides the family
	// at listen time ("udp" on a wildcard address is dual-stack).
	dom := syscall.AF_INET6
	var serr error
	if err := rc.Control(func(fd uintptr) {
		dom, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN)
	}); err != nil {
		return nil, fmt.Errorf("family of udp socket: %w", err)
	}
	if serr != nil {
		return nil, fmt.Errorf("family of udp socket: %w", serr)
	}
	return &udpIO{rc: rc, dom: dom}, nil
}

// udpMsg is the argument block of one sendmsg or recvmsg. It lives on the
// heap, pooled for sends and one per reader for receives, so that what the
// kernel reads and writes never moves and nothing is allocated per call;
// its bound method value is made once.
type udpMsg struct {
	msg syscall.Msghdr
	iov syscall.Iovec
	sa  [syscall.SizeofSockaddrInet6]byte
	oob [32]byte // a UDP_SEGMENT message: CmsgSpace(2), 24 bytes on 64-bit
	n   int
	err syscall.Errno
	op  uintptr // SYS_SENDMSG or SYS_RECVMSG
	fn  func(fd uintptr) bool
}

func newUDPMsg(op uintptr) *udpMsg {
	m := &udpMsg{op: op}
	m.fn = m.call
	return m
}

var udpSends = sync.Pool{New: func() any { return newUDPMsg(syscall.SYS_SENDMSG) }}

// call issues the system call on fd; false asks the poller to wait until
// the socket is ready and call again.
func (m *udpMsg) call(fd uintptr) bool {
	n, errno, again := rawCall(m.op, fd, uintptr(unsafe.Pointer(&m.msg)), 0)
	if again {
		return false
	}
	m.n, m.err = int(n), errno
	return true
}

// putSockaddr writes to into m.sa in the family dom and points the message
// at it; false when that family cannot carry to.
func (m *udpMsg) putSockaddr(to netip.AddrPort, dom int) bool {
	a := to.Addr()
	var port *uint16
	if dom == syscall.AF_INET {
		if !a.Unmap().Is4() {
			return false
		}
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&m.sa[0]))
		*sa = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: a.Unmap().As4()}
		port = &sa.Port
		m.msg.Namelen = syscall.SizeofSockaddrInet4
	} else {
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&m.sa[0]))
		*sa = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: a.As16()}
		if z := a.Zone(); z != "" && a.Is6() && !a.Is4In6() {
			sa.Scope_id = zones.scopeID(z)
		}
		port = &sa.Port
		m.msg.Namelen = syscall.SizeofSockaddrInet6
	}
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(port))[:], to.Port())
	m.msg.Name = &m.sa[0]
	return true
}

// sockaddr reads the sender's address the kernel wrote into m.sa.
func (m *udpMsg) sockaddr() netip.AddrPort {
	switch *(*uint16)(unsafe.Pointer(&m.sa[0])) {
	case syscall.AF_INET:
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&m.sa[0]))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), binary.BigEndian.Uint16(p[:]))
	case syscall.AF_INET6:
		sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&m.sa[0]))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(zones.zone(sa.Scope_id))
		}
		return netip.AddrPortFrom(a, binary.BigEndian.Uint16(p[:]))
	}
	return netip.AddrPort{}
}

// send sends b to to as one datagram, or, when seg > 0, as datagrams of
// seg bytes with one GSO write (the last may be shorter).
func (u *udpIO) send(b []byte, seg int, to netip.AddrPort) error {
	if len(b) == 0 {
		return nil
	}
	m := udpSends.Get().(*udpMsg)
	defer func() {
		m.iov.Base, m.msg.Iov, m.msg.Name, m.msg.Control = nil, nil, nil, nil // hold no buffer in the pool
		udpSends.Put(m)
	}()
	if !m.putSockaddr(to, u.dom) {
		return &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(to), Err: syscall.EAFNOSUPPORT}
	}
	m.iov.Base = &b[0]
	m.iov.SetLen(len(b))
	m.msg.Iov = &m.iov
	m.msg.Iovlen = 1
	m.msg.Control, m.msg.Controllen = nil, 0
	if seg > 0 {
		oob := putGSOOOB(m.oob[:], seg)
		m.msg.Control = &oob[0]
		m.msg.SetControllen(len(oob))
	}
	if err := u.rc.Write(m.fn); err != nil {
		return err // closed, or a deadline
	}
	if m.err != 0 {
		return &net.OpError{Op: "write", Net: "udp", Addr: net.UDPAddrFromAddrPort(to), Err: m.err}
	}
	return nil
}

// udpReader is the receive state of a socket's one reader goroutine.
type udpReader struct {
	u *udpIO
	m *udpMsg
}

func (u *udpIO) reader() *udpReader {
	return &udpReader{u: u, m: newUDPMsg(syscall.SYS_RECVMSG)}
}

// readGRO reads one (possibly coalesced) datagram into b, with room for
// its control messages in oob; seg is the size of the datagrams it holds
// (n when there is one).
func (r *udpReader) readGRO(b, oob []byte) (n, seg int, from netip.AddrPort, err error) {
	m := r.m
	m.msg.Name = &m.sa[0]
	m.msg.Namelen = uint32(len(m.sa))
	m.iov.Base = nil
	if len(b) > 0 {
		m.iov.Base = &b[0]
	}
	m.iov.SetLen(len(b))
	m.msg.Iov = &m.iov
	m.msg.Iovlen = 1
	m.msg.Control, m.msg.Controllen = nil, 0
	if len(oob) > 0 {
		m.msg.Control = &oob[0]
		m.msg.SetControllen(len(oob))
	}
	m.msg.Flags = 0
	err = r.u.rc.Read(m.fn)
	m.iov.Base, m.msg.Control = nil, nil
	if err != nil {
		return 0, 0, from, err
	}
	if m.err != 0 {
		return 0, 0, from, &net.OpError{Op: "read", Net: "udp", Err: m.err}
	}
	n = m.n
	return n, groSegment(oob[:m.msg.Controllen], n), m.sockaddr(), nil
}

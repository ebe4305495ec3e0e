//go:build linux

package transport

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// Linux UDP segmentation offload: one sendmsg carries many equal-sized
// datagrams (UDP_SEGMENT), and one recvmsg returns many datagrams of one
// sender coalesced (UDP_GRO). Per-packet syscalls are most of the cost of
// moving QUIC over UDP (quic-go measured 2.5 vs 0.96 Gbit/s with and
// without). The node's end-to-end QUIC runs on a virtual conn that offers
// quic-go the interface of an offloading socket (innerconn.go): quic-go
// packs runs of packets, and the socket frames each run and sends it with
// one UDP_SEGMENT write (Socket.WriteSegments); the relay forwards each GRO
// read the same way. The system calls themselves are udpio_linux.go's.
const (
	solUDP     = 17
	udpSegment = 103
	udpGRO     = 104
)

// enableGRO asks the kernel to coalesce received datagrams.
func enableGRO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), solUDP, udpGRO, 1)
	}); err != nil {
		return false
	}
	return serr == nil
}

// gsoOOB is the control message asking for segments of size seg.
func gsoOOB(seg int) []byte {
	return putGSOOOB(make([]byte, syscall.CmsgSpace(2)), seg)
}

// putGSOOOB writes the control message asking for segments of size seg
// into b, which has room for it, and returns it.
func putGSOOOB(b []byte, seg int) []byte {
	b = b[:syscall.CmsgSpace(2)]
	clear(b)
	h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = solUDP
	h.Type = udpSegment
	h.SetLen(syscall.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[syscall.CmsgLen(0):], uint16(seg))
	return b
}

// gsoUnsupported reports errors that mean this kernel or device cannot
// segment; the socket then stops trying.
func gsoUnsupported(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOPROTOOPT) ||
		errors.Is(err, syscall.EOPNOTSUPP)
}

// gsoTooBig reports the error of a GSO write whose segments exceed the
// path MTU: the kernel segments but never fragments.
func gsoTooBig(err error) bool { return errors.Is(err, syscall.EMSGSIZE) }

// groOOBSize is room for the GRO control message with spare for any other
// a socket option may add: a control buffer too small for all of them
// would lose the segment size.
var groOOBSize = 4 * syscall.CmsgSpace(16)

// segmentSize returns the segment size a UDP_SEGMENT control message in
// oob asks for, or 0.
func segmentSize(oob []byte) int {
	if d := cmsgData(oob, solUDP, udpSegment); len(d) >= 2 {
		return int(binary.NativeEndian.Uint16(d[:2]))
	}
	return 0
}

// cmsgLenSize is the size of a control message header's length field:
// the kernel's size_t.
const cmsgLenSize = int(unsafe.Sizeof(syscall.Cmsghdr{}.Len))

// cmsgData returns the data of the first control message of level and typ
// in oob, or nil. It does what syscall.ParseSocketControlMessage does
// without allocating: that one builds a slice on every call, and this runs
// on every read and every write of the data path.
func cmsgData(oob []byte, level, typ int32) []byte {
	hdr := syscall.CmsgLen(0)
	for len(oob) >= hdr {
		var l uint64
		if cmsgLenSize == 8 {
			l = binary.NativeEndian.Uint64(oob)
		} else {
			l = uint64(binary.NativeEndian.Uint32(oob))
		}
		if l < uint64(hdr) || l > uint64(len(oob)) {
			return nil // malformed: the kernel never writes this
		}
		lv := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize:]))
		ty := int32(binary.NativeEndian.Uint32(oob[cmsgLenSize+4:]))
		if lv == level && ty == typ {
			return oob[hdr:l]
		}
		oob = oob[min(len(oob), syscall.CmsgSpace(int(l)-hdr)):]
	}
	return nil
}

// groSegment is the segment size of a read of n bytes whose control
// messages are oob: the UDP_GRO message's, or n when there is none.
func groSegment(oob []byte, n int) int {
	if d := cmsgData(oob, solUDP, udpGRO); d != nil {
		// The kernel writes the segment size as an int.
		s := 0
		if len(d) >= 4 {
			s = int(int32(binary.NativeEndian.Uint32(d[:4])))
		} else if len(d) >= 2 {
			s = int(binary.NativeEndian.Uint16(d[:2]))
		}
		if s > 0 {
			return s
		}
	}
	return n
}

// openProbe opens the socket quic-go's capability probes run on
// (innerconn.go): an IPv4 UDP socket that is never bound, so it has no
// port, takes no traffic and needs no interface. quic-go's probes try IPv4
// and IPv6 options and need one of each pair to work; the UDP-level ones
// (GSO) do not depend on the family.
func openProbe() (*net.UDPConn, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	f := os.NewFile(uintptr(fd), "probe")
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

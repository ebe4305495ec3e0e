//go:build linux

package transport

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// tcpConn is a spliced TCP connection whose reads and writes skip the
// scheduler's system-call hooks (rawsyscall_linux.go says why).
// Everything else (half-close, abort, deadlines, close) is the net
// package's: the calls go through the connection's RawConn, whose poller
// waits and deadlines are the same ones.
type tcpConn struct {
	netConn
	rc syscall.RawConn
}

// rawTCP wraps c, or returns nil when its RawConn cannot be had or its
// socket is in blocking mode. The net package keeps its sockets
// non-blocking, but a File() taken of a connection, and its Fd(), would
// switch the socket it shares to blocking; a blocking read issued with
// RawSyscall would hold its P, with one P the whole process, until data
// came.
func rawTCP(c *net.TCPConn) HalfConn {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	nonblocking := false
	if err := rc.Control(func(fd uintptr) {
		fl, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_GETFL, 0)
		nonblocking = errno == 0 && fl&syscall.O_NONBLOCK != 0
	}); err != nil || !nonblocking {
		return nil
	}
	return tcpConn{netConn{c}, rc}
}

func (c tcpConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var (
		n     int
		errno syscall.Errno
	)
	err := c.rc.Read(func(fd uintptr) bool {
		r, e, again := rawCall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		n, errno = int(r), e
		return !again
	})
	if err != nil {
		return 0, c.opError("read", err)
	}
	if errno != 0 {
		return 0, c.opError("read", os.NewSyscallError("read", errno))
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (c tcpConn) Write(p []byte) (int, error) {
	var (
		n     int
		errno syscall.Errno
	)
	err := c.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			r, e, again := rawCall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[n])), uintptr(len(p)-n))
			if again {
				return false
			}
			if e != 0 {
				errno = e
				return true
			}
			n += int(r)
		}
		return true
	})
	if err != nil {
		return n, c.opError("write", err)
	}
	if errno != 0 {
		return n, c.opError("write", os.NewSyscallError("write", errno))
	}
	return n, nil
}

// opError makes err look as the net package's Read and Write report it:
// an *net.OpError of op, whatever RawConn called its own.
func (c tcpConn) opError(op string, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

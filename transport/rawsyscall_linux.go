//go:build linux

package transport

import "syscall"

// The data path's socket calls skip the Go scheduler's system-call hooks:
// the UDP socket's sendmsg and recvmsg (udpio_linux.go) and a spliced TCP
// connection's read and write (tcpconn_linux.go).
//
// Those calls never block (Go's sockets are non-blocking: a full send
// buffer or an empty queue is EAGAIN), yet they are long: on loopback or a
// veth, a GSO write or a 64 KiB TCP write runs the receiver's network stack
// before it returns, tens of µs. Go's wrappers announce every call to the
// scheduler (entersyscall). The runtime's monitor thread (sysmon) takes
// the P of a thread that stays in a call beyond 20 µs and hands it to
// another thread when goroutines are waiting; the caller, back from the
// kernel, must find a P again or park. Under bulk traffic that was
// thousands of hand-offs a second, each a futex wake and two context
// switches, and they kept sysmon polling every 20 µs instead of backing
// off (BENCHMARKS.md, round nine: nearly half of a role's context
// switches). Issued with RawSyscall, the calls hold their P like any other
// code: sysmon sees a running goroutine, which it only preempts after
// 10 ms.
//
// They run inside a syscall.RawConn's Read or Write, so the poller parks
// the goroutine on EAGAIN exactly as the net package would, and deadlines
// and a close end the wait as they do there.

// rawCall makes the system call trap with RawSyscall, again while it is
// interrupted (EINTR), and returns its result r, or its error (r 0).
// again reports EAGAIN: the poller is to wait until the socket is ready,
// and the call be made anew.
func rawCall(trap, a1, a2, a3 uintptr) (r uintptr, errno syscall.Errno, again bool) {
	for {
		r, _, errno = syscall.RawSyscall(trap, a1, a2, a3)
		switch errno {
		case 0:
			return r, 0, false
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return 0, 0, true
		default:
			return 0, errno, false
		}
	}
}

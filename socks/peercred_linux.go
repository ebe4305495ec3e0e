package socks

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// Which local user holds the client end of a loopback TCP connection: the
// kernel knows the uid of every socket. Two ways to ask it:
//
//   - sock_diag (NETLINK_INET_DIAG), the way ss(8) asks: one exact lookup
//     by the connection's four-tuple, answered from the kernel's hash
//     table: 3 µs with 10,000 sockets open (BenchmarkSocketUID), on a
//     socket kept open for all lookups (diagSock).
//   - /proc/net/tcp and /proc/net/tcp6, which the kernel renders in full
//     on every read: O(sockets), 41 ms with 10,000 of them, which would
//     cap socksd at a few dozen connections a second per core. It is
//     only the fallback, for kernels or sandboxes without sock_diag.
//
// Both look for the socket whose local address is the client's end (the
// server's c.RemoteAddr()) and whose remote address is the server's end,
// and take its uid only while a process still holds it open (its inode is
// not 0): a socket its process closed lingers as a TIME_WAIT (or orphaned
// FIN_WAIT) entry that both report as uid 0, root's, which would let in a
// client of another user that sent its request and closed at once.

const uidLookupSupported = true

// errNoSocket: no open socket has that four-tuple (the client left).
var errNoSocket = errors.New("no open socket with that address")

// socketUID returns the uid owning the socket at local talking to remote.
func socketUID(local, remote netip.AddrPort) (uint32, error) {
	uid, err := diagUID(local, remote)
	if err == nil || errors.Is(err, errNoSocket) {
		return uid, err
	}
	// No sock_diag here (a sandbox, a kernel without inet_diag): the slow
	// way still answers.
	return procUID(local, remote)
}

// sock_diag, from linux/netlink.h, linux/sock_diag.h and linux/inet_diag.h.
const (
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	nlmsgError       = 2  // NLMSG_ERROR
	nlmHdrLen        = 16 // struct nlmsghdr
	// struct inet_diag_req_v2: family, protocol, ext, pad (1 each),
	// states (4), then struct inet_diag_sockid: sport, dport (2 each,
	// big-endian), src, dst (16 each, network order), if (4), cookie (8).
	diagReqLen = 4 + 4 + 48
	// struct inet_diag_msg: family, state, timer, retrans (1 each), the
	// sockid (48), expires, rqueue, wqueue, uid, inode (4 each).
	diagMsgLen      = 4 + 48 + 5*4
	diagMsgUIDOff   = 4 + 48 + 3*4
	diagMsgInodeOff = 4 + 48 + 4*4
)

// diagSock is the one netlink socket every lookup asks through, opened by
// the first and kept: opening and closing one cost as much as the lookup
// itself (on the bench machine a lookup took 8.9 µs with a socket of its
// own and 3.2 on the kept one; after 20 ms idle, 84 and 41), and socksd
// looks up every connection before it answers it. Lookups take turns on
// it; the kernel answers an exact lookup within the send, so a turn is
// short (the receive timeout is only a backstop). Any failure other than a
// clean answer closes it, and replies are matched by sequence number, so
// a reply that came late never answers a later question.
var diagSock struct {
	mu   sync.Mutex
	fd   int
	open bool
	seq  uint32
}

// diagUID asks sock_diag for the one socket with this four-tuple.
func diagUID(local, remote netip.AddrPort) (uint32, error) {
	diagSock.mu.Lock()
	defer diagSock.mu.Unlock()
	if !diagSock.open {
		fd, err := openDiag()
		if err != nil {
			return 0, err
		}
		diagSock.fd, diagSock.open = fd, true
	}
	diagSock.seq++
	uid, err := diagAsk(diagSock.fd, diagSock.seq, local, remote)
	if err != nil && !errors.Is(err, errNoSocket) {
		syscall.Close(diagSock.fd)
		diagSock.open = false
	}
	return uid, err
}

// openDiag opens a sock_diag socket.
func openDiag() (int, error) {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, syscall.NETLINK_INET_DIAG)
	if err != nil {
		return -1, fmt.Errorf("sock_diag: %w", err)
	}
	// A reply that never comes must not hold a connection's goroutine.
	tv := syscall.Timeval{Sec: 1}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("sock_diag: %w", err)
	}
	return fd, nil
}

// diagStaleReplies bounds the replies of earlier questions a lookup skips
// before it gives up (and its socket is closed).
const diagStaleReplies = 4

// diagAsk sends the question numbered seq on fd and reads its answer.
func diagAsk(fd int, seq uint32, local, remote netip.AddrPort) (uint32, error) {
	if err := diagSend(fd, seq, local, remote); err != nil {
		return 0, err
	}
	var resp [512]byte
	var m []byte
	for stale := 0; ; stale++ {
		n, _, err := syscall.Recvfrom(fd, resp[:], 0)
		if err != nil {
			return 0, fmt.Errorf("sock_diag: %w", err)
		}
		m = resp[:n]
		if len(m) < nlmHdrLen {
			return 0, fmt.Errorf("sock_diag: short reply of %d bytes", n)
		}
		if binary.NativeEndian.Uint32(m[8:]) == seq {
			break
		}
		if stale == diagStaleReplies {
			return 0, errors.New("sock_diag: no reply to this question")
		}
	}
	switch binary.NativeEndian.Uint16(m[4:]) {
	case nlmsgError:
		if len(m) < nlmHdrLen+4 {
			return 0, errors.New("sock_diag: short error reply")
		}
		errno := syscall.Errno(-int32(binary.NativeEndian.Uint32(m[nlmHdrLen:])))
		if errno == syscall.ENOENT {
			return 0, errNoSocket
		}
		return 0, fmt.Errorf("sock_diag: %w", errno)
	case sockDiagByFamily:
		if len(m) < nlmHdrLen+diagMsgLen {
			return 0, fmt.Errorf("sock_diag: short reply of %d bytes", len(m))
		}
		msg := m[nlmHdrLen:]
		// The kernel answers for the socket asked about; check it anyway
		// (the ports: an AF_INET6 socket's addresses come back v4-mapped).
		if binary.BigEndian.Uint16(msg[4:]) != local.Port() || binary.BigEndian.Uint16(msg[6:]) != remote.Port() {
			return 0, errors.New("sock_diag: the reply is about another socket")
		}
		if binary.NativeEndian.Uint32(msg[diagMsgInodeOff:]) == 0 {
			return 0, errNoSocket // closed by its process: its uid is gone
		}
		return binary.NativeEndian.Uint32(msg[diagMsgUIDOff:]), nil
	}
	return 0, fmt.Errorf("sock_diag: unexpected reply type %d", binary.NativeEndian.Uint16(m[4:]))
}

// diagSend sends on fd the question numbered seq: which socket has this
// four-tuple.
func diagSend(fd int, seq uint32, local, remote netip.AddrPort) error {
	family := byte(syscall.AF_INET6)
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	if la.Is4() && ra.Is4() {
		// An IPv4 connection is hashed by its IPv4 addresses, whichever
		// family its sockets are.
		family = syscall.AF_INET
	}
	var req [nlmHdrLen + diagReqLen]byte
	binary.NativeEndian.PutUint32(req[0:], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.NativeEndian.PutUint16(req[6:], syscall.NLM_F_REQUEST) // no DUMP: an exact lookup
	binary.NativeEndian.PutUint32(req[8:], seq)
	r := req[nlmHdrLen:]
	r[0], r[1] = family, syscall.IPPROTO_TCP
	binary.NativeEndian.PutUint32(r[4:], 0xffffffff) // every state
	id := r[8:]
	binary.BigEndian.PutUint16(id[0:], local.Port())
	binary.BigEndian.PutUint16(id[2:], remote.Port())
	putDiagAddr(id[4:20], la)
	putDiagAddr(id[20:36], ra)
	binary.NativeEndian.PutUint32(id[40:], 0xffffffff) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(id[44:], 0xffffffff)
	if err := syscall.Sendto(fd, req[:], 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag: %w", err)
	}
	return nil
}

// putDiagAddr writes a in inet_diag_sockid's form: an IPv4 address in the
// first four bytes, an IPv6 address in all sixteen, network order.
func putDiagAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// procUID finds the socket in /proc/net/tcp (IPv4 connections, whatever
// the family of their sockets) or /proc/net/tcp6. A row is
//
//	sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
//
// with addresses as hex words, each 32-bit word of the address printed as
// a number in the machine's byte order, and the port as 4 hex digits.
func procUID(local, remote netip.AddrPort) (uint32, error) {
	file, la, ra := "/proc/net/tcp6", local.Addr(), remote.Addr()
	if la.Unmap().Is4() && ra.Unmap().Is4() {
		// The socket may be AF_INET (listed in tcp) or AF_INET6 with
		// v4-mapped addresses (listed in tcp6 in that form).
		uid, err := procFileUID("/proc/net/tcp", procAddr(la.Unmap(), local.Port()), procAddr(ra.Unmap(), remote.Port()))
		if !errors.Is(err, errNoSocket) {
			return uid, err
		}
		la, ra = netip.AddrFrom16(la.As16()), netip.AddrFrom16(ra.As16())
	}
	return procFileUID(file, procAddr(la, local.Port()), procAddr(ra, remote.Port()))
}

func procFileUID(file, local, remote string) (uint32, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	key := []byte(" " + local + " " + remote + " ")
	// A closed socket may linger beside a new one of the same addresses.
	for rest := data; ; {
		i := bytes.Index(rest, key)
		if i < 0 {
			return 0, errNoSocket
		}
		line := rest[i+len(key):]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		rest = rest[i+len(key)+len(line):]
		// After the addresses: st, tx_queue:rx_queue, tr:tm->when,
		// retrnsmt, uid, timeout, inode.
		f := bytes.Fields(line)
		if len(f) < 7 {
			return 0, fmt.Errorf("%s: short row %q", file, line)
		}
		if string(f[6]) == "0" {
			continue // closed by its process: its uid is gone
		}
		uid, err := strconv.ParseUint(string(f[4]), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("%s: uid %q: %w", file, f[4], err)
		}
		return uint32(uid), nil
	}
}

// procAddr renders a and port as /proc/net/tcp{,6} prints them.
func procAddr(a netip.Addr, port uint16) string {
	var raw []byte
	if a.Is4() {
		v := a.As4()
		raw = v[:]
	} else {
		v := a.As16()
		raw = v[:]
	}
	words := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		// The kernel prints each word as the number it is in memory.
		binary.BigEndian.PutUint32(words[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	return fmt.Sprintf("%s:%04X", bytes.ToUpper([]byte(hex.EncodeToString(words))), port)
}

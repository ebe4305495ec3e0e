//go:build !linux

package transport

import "net"

// rawTCP is nil: elsewhere a spliced TCP connection moves its bytes with
// the net package's calls (tcpconn_linux.go says why Linux does not).
func rawTCP(*net.TCPConn) HalfConn { return nil }

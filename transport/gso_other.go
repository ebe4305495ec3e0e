//go:build !linux

package transport

import "net"

// Without Linux's UDP offloads every datagram is its own syscall.

func enableGRO(*net.UDPConn) bool { return false }

func gsoUnsupported(error) bool { return true }

func gsoTooBig(error) bool { return false }

func gsoOOB(int) []byte { return nil }

var groOOBSize = 0

// segmentSize is 0: quic-go segments only on Linux.
func segmentSize([]byte) int { return 0 }

// groSegment is n: reads are never coalesced.
func groSegment(_ []byte, n int) int { return n }

// openProbe opens the socket quic-go's capability probes run on
// (innerconn.go); without Linux's offloads only DF and ECN are probed.
func openProbe() (*net.UDPConn, error) {
	return net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
}

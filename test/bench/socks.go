package main

// A minimal SOCKS5 client (RFC 1928, no authentication, CONNECT only) that
// talks like nc -X 5: greeting, wait for the choice, request, wait for the
// reply. Names go as atyp 3, IPv4 literals as atyp 1.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// socksDial connects to host:port through the SOCKS5 proxy at proxy. An
// empty proxy dials host:port directly.
func socksDial(proxy, host string, port int, timeout time.Duration) (*net.TCPConn, error) {
	if proxy == "" {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(host, fmt.Sprint(port)), timeout)
		if err != nil {
			return nil, err
		}
		return c.(*net.TCPConn), nil
	}
	c, err := net.DialTimeout("tcp", proxy, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to SOCKS proxy %s: %w", proxy, err)
	}
	tc := c.(*net.TCPConn)
	_ = tc.SetDeadline(time.Now().Add(timeout))
	if err := socksHandshake(tc, host, port); err != nil {
		tc.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

func socksHandshake(c net.Conn, host string, port int) error {
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return err
	}
	var b [262]byte
	if _, err := io.ReadFull(c, b[:2]); err != nil {
		return fmt.Errorf("SOCKS greeting: %w", err)
	}
	if b[0] != 5 || b[1] != 0 {
		return fmt.Errorf("SOCKS greeting: proxy chose method %#x", b[1])
	}
	req := []byte{5, 1, 0}
	if a, err := netip.ParseAddr(host); err == nil && a.Is4() {
		a4 := a.As4()
		req = append(append(req, 1), a4[:]...)
	} else {
		if len(host) > 255 {
			return errors.New("host name too long for SOCKS")
		}
		req = append(append(req, 3, byte(len(host))), host...)
	}
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, b[:4]); err != nil {
		return fmt.Errorf("SOCKS reply: %w", err)
	}
	if b[1] != 0 {
		return fmt.Errorf("SOCKS reply %#02x", b[1])
	}
	var rest int
	switch b[3] {
	case 1:
		rest = 4 + 2
	case 4:
		rest = 16 + 2
	case 3:
		if _, err := io.ReadFull(c, b[:1]); err != nil {
			return fmt.Errorf("SOCKS reply: %w", err)
		}
		rest = int(b[0]) + 2
	default:
		return fmt.Errorf("SOCKS reply: address type %d", b[3])
	}
	if _, err := io.ReadFull(c, b[:rest]); err != nil {
		return fmt.Errorf("SOCKS reply: %w", err)
	}
	return nil
}

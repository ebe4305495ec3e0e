//go:build linux

package e2e

// A tiny raw SOCKS5 client (RFC 1928, no authentication) so that the tests can
// see reply codes, their latency, and drive half-closes themselves.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"time"
)

// SOCKS5 commands, address types and the reply codes the contract names.
const (
	cmdConnect = 0x01
	cmdBind    = 0x02
	cmdUDP     = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04

	repSucceeded       = 0x00
	repNotAllowed      = 0x02
	repHostUnreachable = 0x04
	repRefused         = 0x05
	repTTLExpired      = 0x06
	repCmdNotSupported = 0x07
)

var replyNames = map[byte]string{
	0x00: "succeeded", 0x01: "general failure", 0x02: "not allowed by ruleset",
	0x03: "network unreachable", 0x04: "host unreachable", 0x05: "connection refused",
	0x06: "TTL expired", 0x07: "command not supported", 0x08: "address type not supported",
}

func replyName(code byte) string {
	if n, ok := replyNames[code]; ok {
		return fmt.Sprintf("0x%02x (%s)", code, n)
	}
	return fmt.Sprintf("0x%02x", code)
}

// idRE matches a device ID: 52 lowercase z-base-32 characters.
var idRE = regexp.MustCompile(`^[ybndrfg8ejkmcpqxot1uwisza345h769]{52}$`)

// socksReply is what a SOCKS request came back with.
type socksReply struct {
	Code    byte
	Elapsed time.Duration // from dialing the proxy to reading the reply code
	Conn    net.Conn      // open only when Code == 0; the caller closes it
}

// socksRequest sends one SOCKS5 request with the given address type. host
// is an IP literal for atypIPv4/atypIPv6 and any string for atypDomain.
func socksRequest(proxy string, cmd, atyp byte, host string, port int) (socksReply, error) {
	var rep socksReply
	dst, err := encodeAddr(atyp, host)
	if err != nil {
		return rep, err
	}
	start := time.Now()
	c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		return rep, err
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))

	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		return rep, fmt.Errorf("greeting: %w", err)
	}
	var sel [2]byte
	if _, err := io.ReadFull(c, sel[:]); err != nil {
		return rep, fmt.Errorf("method selection: %w", err)
	}
	if sel != [2]byte{5, 0} {
		return rep, fmt.Errorf("method selection: got % x, want 05 00", sel[:])
	}
	req := append([]byte{5, cmd, 0}, dst...)
	req = binary.BigEndian.AppendUint16(req, uint16(port))
	if _, err := c.Write(req); err != nil {
		return rep, fmt.Errorf("request: %w", err)
	}
	var head [4]byte
	if _, err := io.ReadFull(c, head[:2]); err != nil {
		return rep, fmt.Errorf("reply (after %s): %w", time.Since(start).Round(time.Millisecond), err)
	}
	rep.Elapsed = time.Since(start)
	rep.Code = head[1]
	if head[0] != 5 {
		return rep, fmt.Errorf("reply version %d", head[0])
	}
	// The rest of the reply: RSV ATYP BND.ADDR BND.PORT. A failing server
	// may close right after the code; that is fine for a failure.
	if _, err := io.ReadFull(c, head[2:]); err != nil {
		if rep.Code != repSucceeded {
			return rep, nil
		}
		return rep, fmt.Errorf("reply header: %w", err)
	}
	var n int
	switch head[3] {
	case atypIPv4:
		n = 4
	case atypIPv6:
		n = 16
	case atypDomain:
		var l [1]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return rep, fmt.Errorf("reply address: %w", err)
		}
		n = int(l[0])
	default:
		return rep, fmt.Errorf("reply address type 0x%02x", head[3])
	}
	if _, err := io.ReadFull(c, make([]byte, n+2)); err != nil && rep.Code == repSucceeded {
		return rep, fmt.Errorf("reply address: %w", err)
	}
	if rep.Code == repSucceeded {
		_ = c.SetDeadline(time.Time{})
		rep.Conn = c
		ok = true
	}
	return rep, nil
}

func encodeAddr(atyp byte, host string) ([]byte, error) {
	switch atyp {
	case atypIPv4:
		ip := net.ParseIP(host).To4()
		if ip == nil {
			return nil, fmt.Errorf("%q is not IPv4", host)
		}
		return append([]byte{atypIPv4}, ip...), nil
	case atypIPv6:
		ip := net.ParseIP(host).To16()
		if ip == nil {
			return nil, fmt.Errorf("%q is not IPv6", host)
		}
		return append([]byte{atypIPv6}, ip...), nil
	case atypDomain:
		if len(host) > 255 {
			return nil, fmt.Errorf("domain of %d bytes", len(host))
		}
		return append([]byte{atypDomain, byte(len(host))}, host...), nil
	}
	return nil, fmt.Errorf("address type 0x%02x", atyp)
}

// socksConnect is a CONNECT to a domain name.
func socksConnect(proxy, host string, port int) (socksReply, error) {
	return socksRequest(proxy, cmdConnect, atypDomain, host, port)
}

// waitReachable retries CONNECT host:port until the reply is 0x00.
func waitReachable(proxy, host string, port int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	var last string
	for {
		rep, err := socksConnect(proxy, host, port)
		if err == nil && rep.Code == repSucceeded {
			rep.Conn.Close()
			return time.Since(start), nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = "reply " + replyName(rep.Code)
		}
		if time.Now().After(deadline) {
			return time.Since(start), fmt.Errorf("%s:%d not reachable through SOCKS %s after %s; last: %s", host, port, proxy, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readAllTimeout reads until EOF or the deadline.
func readAllTimeout(c net.Conn, timeout time.Duration) ([]byte, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return b, fmt.Errorf("no EOF within %s (read %d bytes)", timeout, len(b))
	}
	return b, err
}

// readLine reads one line (up to 1 KiB) within timeout.
func readLine(c net.Conn, timeout time.Duration) (string, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	var buf []byte
	b := make([]byte, 1)
	for len(buf) < 1024 {
		if _, err := c.Read(b); err != nil {
			return string(buf), err
		}
		buf = append(buf, b[0])
		if b[0] == '\n' {
			break
		}
	}
	return string(buf), nil
}

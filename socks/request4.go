package socks

// SOCKS4 and SOCKS4a on the wire, which the server answers at once rather
// than leaving a client that speaks them to wait for a timeout (integers
// are big-endian):
//
// Request, client → server, first on the connection:
//
//	VN       1 byte     0x04
//	CD       1 byte     0x01 CONNECT, 0x02 BIND; only CONNECT is served
//	DSTPORT  2 bytes
//	DSTIP    4 bytes    0.0.0.x with x ≠ 0 means SOCKS4a: the host name
//	                    follows the user ID
//	USERID   0..255 bytes, then a NUL; read and ignored (it proves
//	                    nothing: SOCKS4 has no passwords)
//	HOST     SOCKS4a only: 1..255 bytes, then a NUL
//
// Reply, server → client, one per request:
//
//	VN       1 byte     0x00
//	CD       1 byte     0x5A granted; 0x5B rejected or failed, after
//	                    which the server closes the connection
//	DSTPORT  2 bytes    this server always sends 0
//	DSTIP    4 bytes    this server always sends 0.0.0.0
//
// After 0x5A the connection carries the proxied bytes. A USERID or HOST
// longer than 255 bytes is malformed: it is answered 0x5B unread.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

const (
	socks4Version      = 0x04
	socks4ReplyVersion = 0x00

	// Reply codes (CD) of SOCKS4.
	Reply4Granted  byte = 0x5A
	Reply4Rejected byte = 0x5B

	// maxSocks4Field bounds USERID and HOST, NUL excluded.
	maxSocks4Field = 255
)

// ErrVersion4: the peer does not speak SOCKS 4.
var ErrVersion4 = errors.New("socks: not SOCKS version 4")

// Request4 is a parsed SOCKS4 or SOCKS4a request.
type Request4 struct {
	Cmd  byte // 1 CONNECT, 2 BIND
	Port uint16
	// IP is DSTIP; 0.0.0.x (x ≠ 0) for SOCKS4a.
	IP   netip.Addr
	User string
	// Host is the name of a SOCKS4a request; empty for SOCKS4.
	Host string
}

// Is4a reports whether the request carries a host name.
func (r Request4) Is4a() bool { return isSocks4a(r.IP) }

func isSocks4a(ip netip.Addr) bool {
	b := ip.As4()
	return b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] != 0
}

// Target is the request as a SOCKS5 one, for the Dial and the log: the
// host name of SOCKS4a, or the IP of SOCKS4.
func (r Request4) Target() Request {
	if r.Is4a() {
		return Request{Cmd: r.Cmd, AddrType: AddrDomain, Host: r.Host, Port: r.Port}
	}
	return Request{Cmd: r.Cmd, AddrType: AddrIPv4, Host: r.IP.String(), Port: r.Port}
}

// ReadRequest4 reads one SOCKS4 or SOCKS4a request. It reads exactly the
// request (a byte at a time through the NUL-terminated fields), so bytes a
// client pipelines after it stay in r, and at most 8 + 2×256 bytes.
func ReadRequest4(r io.Reader) (Request4, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Request4{}, fmt.Errorf("reading socks4 request: %w", err)
	}
	if hdr[0] != socks4Version {
		return Request4{}, fmt.Errorf("reading socks4 request: %w (version byte %#02x)", ErrVersion4, hdr[0])
	}
	req := Request4{Cmd: hdr[1], Port: binary.BigEndian.Uint16(hdr[2:4]), IP: netip.AddrFrom4([4]byte(hdr[4:8]))}
	user, err := readNulString(r)
	if err != nil {
		return req, fmt.Errorf("reading socks4 user id: %w", err)
	}
	req.User = user
	if !req.Is4a() {
		return req, nil
	}
	host, err := readNulString(r)
	if err != nil {
		return req, fmt.Errorf("reading socks4a host name: %w", err)
	}
	if host == "" {
		return req, fmt.Errorf("reading socks4a host name: %w: empty", ErrMalformed)
	}
	req.Host = host
	return req, nil
}

// readNulString reads up to maxSocks4Field bytes and the NUL that ends
// them, and not a byte more.
func readNulString(r io.Reader) (string, error) {
	var buf [maxSocks4Field + 1]byte
	for i := range buf {
		if _, err := io.ReadFull(r, buf[i:i+1]); err != nil {
			return "", midMessage(err)
		}
		if buf[i] == 0 {
			return string(buf[:i]), nil
		}
	}
	return "", fmt.Errorf("%w: longer than %d bytes", ErrMalformed, maxSocks4Field)
}

// AppendRequest4 appends the wire form of r to b, for the client side: a
// SOCKS4a request when r.Host is set (IP is then 0.0.0.1), else SOCKS4 to
// r.IP, which must be IPv4.
func AppendRequest4(b []byte, r Request4) ([]byte, error) {
	ip := r.IP
	if r.Host != "" {
		if len(r.Host) > maxSocks4Field || strings.IndexByte(r.Host, 0) >= 0 {
			return b, fmt.Errorf("encoding socks4a request: host name of %d bytes, want 1..%d without NUL", len(r.Host), maxSocks4Field)
		}
		ip = netip.AddrFrom4([4]byte{0, 0, 0, 1})
	} else if !ip.Is4() || isSocks4a(ip) {
		return b, fmt.Errorf("encoding socks4 request: %v is not an IPv4 address SOCKS4 can carry", ip)
	}
	if len(r.User) > maxSocks4Field || strings.IndexByte(r.User, 0) >= 0 {
		return b, fmt.Errorf("encoding socks4 request: user id of %d bytes, want 0..%d without NUL", len(r.User), maxSocks4Field)
	}
	a := ip.As4()
	b = append(b, socks4Version, r.Cmd)
	b = binary.BigEndian.AppendUint16(b, r.Port)
	b = append(b, a[:]...)
	b = append(append(b, r.User...), 0)
	if r.Host != "" {
		b = append(append(b, r.Host...), 0)
	}
	return b, nil
}

// appendReply4 appends a SOCKS4 reply with code Reply4Granted or
// Reply4Rejected.
func appendReply4(b []byte, code byte) []byte {
	return append(b, socks4ReplyVersion, code, 0, 0, 0, 0, 0, 0)
}

// ReadReply4 reads a SOCKS4 reply and returns its CD code, for the client
// side and the tests.
func ReadReply4(r io.Reader) (byte, error) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Reply4Rejected, fmt.Errorf("reading socks4 reply: %w", err)
	}
	if b[0] != socks4ReplyVersion {
		return Reply4Rejected, fmt.Errorf("reading socks4 reply: %w: version byte %#02x, want 0", ErrMalformed, b[0])
	}
	return b[1], nil
}

package socks

// Everything of SOCKS5 on the wire lives in this file (SOCKS4 and 4a in
// request4.go). The format, frame by frame (RFC 1928; integers are
// big-endian):
//
// Greeting, client → server, first on the connection:
//
//	VER      1 byte     0x05
//	NMETHODS 1 byte     how many METHODS follow; at least 1
//	METHODS  NMETHODS   authentication methods the client can do
//
// Method selection, server → client:
//
//	VER      1 byte     0x05
//	METHOD   1 byte     0x00 no authentication; 0x02 username/password,
//	                    the only one a server with a password file takes;
//	                    0xFF none acceptable, and the server closes the
//	                    connection
//
// Username/password request, client → server, after method 0x02 (RFC 1929):
//
//	VER      1 byte     0x01, the version of this sub-negotiation
//	ULEN     1 byte     1..255
//	UNAME    ULEN bytes
//	PLEN     1 byte     RFC 1929 says 1..255; 0 is read (and matches no
//	                    entry, since passwords are never empty)
//	PASSWD   PLEN bytes
//
// Username/password status, server → client:
//
//	VER      1 byte     0x01
//	STATUS   1 byte     0x00 success; anything else is a failure, after
//	                    which the server closes the connection
//
// Request, client → server:
//
//	VER      1 byte     0x05
//	CMD      1 byte     0x01 CONNECT, 0x02 BIND, 0x03 UDP ASSOCIATE
//	RSV      1 byte     sent as 0x00; ignored on receipt, as some clients
//	                    put garbage there and nothing depends on it
//	ATYP     1 byte     0x01 IPv4, 0x03 domain name, 0x04 IPv6
//	DST.ADDR            IPv4: 4 bytes; IPv6: 16 bytes; domain name: 1
//	                    length byte (1..255) then that many bytes, with no
//	                    terminating NUL
//	DST.PORT 2 bytes
//
// Reply, server → client, one per request:
//
//	VER      1 byte     0x05
//	REP      1 byte     reply code (see reply.go)
//	RSV      1 byte     0x00
//	ATYP     1 byte     as in the request
//	BND.ADDR            as DST.ADDR; this server always sends 0.0.0.0
//	BND.PORT 2 bytes    this server always sends 0
//
// After REP 0x00 to CONNECT the connection carries the proxied bytes; after
// any other reply the server closes it. An unknown ATYP leaves the length of
// DST.ADDR unknown, so nothing after it can be read: the server answers 0x08
// and closes.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

const (
	socksVersion = 0x05

	methodNoAuth       = 0x00
	methodUserPass     = 0x02
	methodNoAcceptable = 0xFF

	userPassVersion = 0x01
	userPassOK      = 0x00
	userPassFailed  = 0x01

	// maxAddrLen is the longest DST.ADDR plus DST.PORT: a 255-byte name
	// with its length byte.
	maxAddrLen = 1 + 255 + 2
)

// Request commands (CMD).
const (
	CmdConnect      byte = 0x01
	CmdBind         byte = 0x02
	CmdUDPAssociate byte = 0x03
)

// Address types (ATYP).
const (
	AddrIPv4   byte = 0x01
	AddrDomain byte = 0x03
	AddrIPv6   byte = 0x04
)

// Errors of parsing; callers branch on them with errors.Is.
var (
	// ErrVersion: the peer does not speak SOCKS 5. The server closes
	// without a reply, since the peer would not understand one.
	ErrVersion = errors.New("socks: not SOCKS version 5")
	// ErrMalformed: a field holds a value the protocol does not allow.
	ErrMalformed = errors.New("socks: malformed message")
	// ErrAddressNotSupported: ATYP is none of IPv4, domain name, IPv6.
	// ReplyCode maps it to ReplyAddressNotSupported.
	ErrAddressNotSupported = errors.New("socks: address type not supported")
	// ErrCommandNotSupported: CMD is not CONNECT. ReadRequest parses any
	// CMD; the server reports this one. ReplyCode maps it to
	// ReplyCommandNotSupported.
	ErrCommandNotSupported = errors.New("socks: command not supported")
)

// Request is a parsed SOCKS5 request.
type Request struct {
	Cmd      byte   // 1 CONNECT, 2 BIND, 3 UDP ASSOCIATE
	AddrType byte   // 1 IPv4, 3 domain name, 4 IPv6
	Host     string // the name as sent (atyp 3), or the IP in text form (atyp 1/4)
	Port     uint16
}

// ReadGreeting reads the client's greeting and returns the methods it
// offers, at least one. It reads exactly the greeting and nothing more.
func ReadGreeting(r io.Reader) (methods []byte, err error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("reading greeting: %w", err)
	}
	if hdr[0] != socksVersion {
		return nil, fmt.Errorf("reading greeting: %w (version byte %#02x)", ErrVersion, hdr[0])
	}
	if hdr[1] == 0 {
		return nil, fmt.Errorf("reading greeting: %w: no methods offered", ErrMalformed)
	}
	methods = make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("reading greeting methods: %w", midMessage(err))
	}
	return methods, nil
}

// ReadRequest reads one request. It reads exactly the request, so bytes a
// client pipelines after it stay in r. Any CMD is accepted; deciding which
// to serve is the caller's business. On error the returned Request holds
// what was parsed before the error (Cmd and AddrType once the header was
// read), for logging.
func ReadRequest(r io.Reader) (Request, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Request{}, fmt.Errorf("reading request: %w", err)
	}
	if hdr[0] != socksVersion {
		return Request{}, fmt.Errorf("reading request: %w (version byte %#02x)", ErrVersion, hdr[0])
	}
	req := Request{Cmd: hdr[1], AddrType: hdr[3]}
	host, port, err := readAddr(r, req.AddrType)
	if err != nil {
		return req, fmt.Errorf("reading request destination: %w", err)
	}
	req.Host, req.Port = host, port
	return req, nil
}

// readAddr reads ADDR and PORT of the given ATYP, as in a request or a
// reply.
func readAddr(r io.Reader, atyp byte) (host string, port uint16, err error) {
	var buf [maxAddrLen]byte
	var b []byte
	switch atyp {
	case AddrIPv4:
		b = buf[:4+2]
	case AddrIPv6:
		b = buf[:16+2]
	case AddrDomain:
		if _, err := io.ReadFull(r, buf[:1]); err != nil {
			return "", 0, midMessage(err)
		}
		n := int(buf[0])
		if n == 0 {
			return "", 0, fmt.Errorf("%w: empty domain name", ErrMalformed)
		}
		b = buf[1 : 1+n+2]
	default:
		return "", 0, fmt.Errorf("%w: %#02x", ErrAddressNotSupported, atyp)
	}
	if _, err := io.ReadFull(r, b); err != nil {
		return "", 0, midMessage(err)
	}
	addr, portBytes := b[:len(b)-2], b[len(b)-2:]
	switch atyp {
	case AddrIPv4:
		host = netip.AddrFrom4([4]byte(addr)).String()
	case AddrIPv6:
		host = netip.AddrFrom16([16]byte(addr)).String()
	default:
		host = string(addr)
	}
	return host, binary.BigEndian.Uint16(portBytes), nil
}

// ReadUserPass reads a username/password request (RFC 1929). It reads
// exactly the request.
func ReadUserPass(r io.Reader) (user, password string, err error) {
	var buf [1 + 1 + 255 + 1 + 255]byte
	if _, err := io.ReadFull(r, buf[:2]); err != nil {
		return "", "", fmt.Errorf("reading username/password: %w", err)
	}
	if buf[0] != userPassVersion {
		return "", "", fmt.Errorf("reading username/password: %w: version byte %#02x, want 0x01", ErrMalformed, buf[0])
	}
	ulen := int(buf[1])
	if ulen == 0 {
		return "", "", fmt.Errorf("reading username/password: %w: empty username", ErrMalformed)
	}
	// The username and the password's length byte.
	if _, err := io.ReadFull(r, buf[2:2+ulen+1]); err != nil {
		return "", "", fmt.Errorf("reading username/password: %w", midMessage(err))
	}
	user = string(buf[2 : 2+ulen])
	plen := int(buf[2+ulen])
	pw := buf[3+ulen : 3+ulen+plen]
	if _, err := io.ReadFull(r, pw); err != nil {
		return "", "", fmt.Errorf("reading username/password: %w", midMessage(err))
	}
	return user, string(pw), nil
}

// AppendUserPass appends a username/password request to b, for the client
// side. Both must be 1..255 bytes.
func AppendUserPass(b []byte, user, password string) ([]byte, error) {
	if len(user) == 0 || len(user) > 255 || len(password) == 0 || len(password) > 255 {
		return b, fmt.Errorf("encoding username/password: username of %d bytes, password of %d: want 1..255 each", len(user), len(password))
	}
	b = append(b, userPassVersion, byte(len(user)))
	b = append(b, user...)
	b = append(b, byte(len(password)))
	return append(b, password...), nil
}

// midMessage turns a clean EOF inside a message into ErrUnexpectedEOF: only
// an EOF before the first byte of a message is a clean end.
func midMessage(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// AppendRequest appends the wire form of r to b, for the client side. An
// AddrType of 0 is chosen from Host: IPv4 or IPv6 if Host is an IP literal
// (without brackets), a domain name otherwise. It fails, returning b unchanged, if Host cannot
// be sent as the AddrType (an IPv6 address with a zone, a name that is empty
// or longer than 255 bytes, text that is not an IP of the requested family).
func AppendRequest(b []byte, r Request) ([]byte, error) {
	atyp := r.AddrType
	ip, ipErr := netip.ParseAddr(r.Host)
	if atyp == 0 {
		switch {
		case ipErr != nil:
			atyp = AddrDomain
		case ip.Is4():
			atyp = AddrIPv4
		default:
			atyp = AddrIPv6
		}
	}
	var addr []byte
	switch atyp {
	case AddrIPv4:
		if ipErr != nil || !ip.Is4() {
			return b, fmt.Errorf("encoding request: %q is not an IPv4 address", r.Host)
		}
		a := ip.As4()
		addr = a[:]
	case AddrIPv6:
		if ipErr != nil || !ip.Is6() || ip.Zone() != "" {
			return b, fmt.Errorf("encoding request: %q is not an IPv6 address without zone", r.Host)
		}
		a := ip.As16()
		addr = a[:]
	case AddrDomain:
		if len(r.Host) == 0 || len(r.Host) > 255 {
			return b, fmt.Errorf("encoding request: domain name of %d bytes, want 1..255", len(r.Host))
		}
	default:
		return b, fmt.Errorf("encoding request: %w: %#02x", ErrAddressNotSupported, atyp)
	}
	b = append(b, socksVersion, r.Cmd, 0x00, atyp)
	if atyp == AddrDomain {
		b = append(b, byte(len(r.Host)))
		b = append(b, r.Host...)
	} else {
		b = append(b, addr...)
	}
	return binary.BigEndian.AppendUint16(b, r.Port), nil
}

// appendReply appends a reply with the given code. BND.ADDR and BND.PORT
// are 0.0.0.0:0: the bound address is the daemon's business, and clients
// of a CONNECT proxy ignore it.
func appendReply(b []byte, code byte) []byte {
	return append(b, socksVersion, code, 0x00, AddrIPv4, 0, 0, 0, 0, 0, 0)
}

// ReadReply reads a server's reply to a request, bound address of any ATYP
// included, and returns its REP code; the caller decides what a code other
// than ReplySucceeded means. It reads exactly the reply, so proxied bytes
// that follow stay in r. On error the code is ReplyGeneralFailure, so a
// caller that looks only at the code still does not proceed.
func ReadReply(r io.Reader) (code byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return ReplyGeneralFailure, fmt.Errorf("reading reply: %w", err)
	}
	if hdr[0] != socksVersion {
		return ReplyGeneralFailure, fmt.Errorf("reading reply: %w (version byte %#02x)", ErrVersion, hdr[0])
	}
	if _, _, err := readAddr(r, hdr[3]); err != nil {
		return ReplyGeneralFailure, fmt.Errorf("reading reply bound address: %w", err)
	}
	return hdr[1], nil
}

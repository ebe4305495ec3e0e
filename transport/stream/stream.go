// Package stream is the stream protocol: the first bytes of every
// end-to-end stream, with both halves that speak it — the client's Open
// (client.go) and the device's Accept (device.go), credential challenge
// included — beside the format they share (this file).
//
// A client opens one bidirectional QUIC stream per TCP connection it
// carries. Before any payload it sends a Header, and the device answers with
// a Status before any payload of its own, so a SOCKS server can send the
// right reply before the first byte of the session. All integers are
// big-endian.
//
//	Header, client → device
//	  version  uint8    always 1
//	  port     uint16   the published (remote) port the client wants
//	  credLen  uint16   length of cred, at most MaxCredentialLen
//	  cred     [credLen]byte  a credential for protected ports, or empty
//
//	Status, device → client
//	  code     uint8    see StatusCode
//	  msgLen   uint8
//	  msg      [msgLen]byte   a short reason for logs, printable ASCII (a
//	                          client shows any other byte as '?'), may be empty
//
//	Credential, client → device, only after StatusCredentialRequired
//	  credLen  uint16   0 if the client holds no credential for that fleet
//	  cred     [credLen]byte
//
// A protected port answers a Header that carries no credential with
// StatusCredentialRequired, whose msg is the fleet ID; the client answers
// with a Credential (possibly empty) and the device with a final Status.
// Clients remember which fleet guards a port and put the credential in the
// Header next time, saving the round trip. Credentials are sent only to the
// device that asked, on the end-to-end connection, and are bound to the
// client's key, so the device learns nothing it could use elsewhere.
//
// After the Status with code StatusOK, both directions carry the TCP bytes
// verbatim; a FIN on the stream is a TCP half-close. Any other final Status
// is followed by the device closing the stream.
//
// Invariants both halves keep: the device answers every stream with a
// final Status before any payload, and a client never sends a credential
// but in answer to a challenge naming its fleet, or to a device that named
// that fleet for that port before.
package stream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// Timings of the protocol.
const (
	// HeaderTimeout bounds how long a device waits for a new stream's
	// Header (and a challenged client's Credential).
	HeaderTimeout = 10 * time.Second
	// AnswerTimeout bounds a client's wait for the device's answer; the
	// device gives up on its local dial sooner (the agent's 5 s).
	AnswerTimeout = 8 * time.Second
	// refuseTimeout bounds writing a refusal to a client that reads
	// nothing.
	refuseTimeout = 5 * time.Second
)

// Outcomes of opening a stream, as the device reports them. Callers branch
// on them with errors.Is.
var (
	// ErrPortNotPublished: the device publishes nothing on that port.
	ErrPortNotPublished = errors.New("port not published")
	// ErrDenied: the port exists but this client may not use it.
	ErrDenied = errors.New("access denied")
	// ErrRefused: the device's local service refused the connection.
	ErrRefused = errors.New("local service refused the connection")
	// ErrTimeout: the device's local service did not answer in time.
	ErrTimeout = errors.New("local service timed out")
	// ErrBadRequest: the device could not parse the stream header.
	ErrBadRequest = errors.New("device rejected the stream header")
	// ErrClientGone (device side): the client reset the stream before
	// its header was read, or was gone when the device challenged or
	// accepted it. A header or credential that does not arrive in time is
	// ErrMalformedHeader, and answered as one.
	ErrClientGone = errors.New("client gone")
)

// StreamVersion is the only version of the stream header.
const StreamVersion = 1

// MaxCredentialLen bounds the credential in a Header.
const MaxCredentialLen = 8192

// Header is what a client asks of a device on one stream.
type Header struct {
	Port       uint16
	Credential []byte
}

// ErrMalformedHeader is returned for a stream header that does not parse.
var ErrMalformedHeader = errors.New("malformed stream header")

// AppendHeader appends the wire form of o to b.
func AppendHeader(b []byte, o Header) ([]byte, error) {
	if len(o.Credential) > MaxCredentialLen {
		return b, fmt.Errorf("credential of %d bytes exceeds %d", len(o.Credential), MaxCredentialLen)
	}
	b = append(b, StreamVersion)
	b = binary.BigEndian.AppendUint16(b, o.Port)
	b = binary.BigEndian.AppendUint16(b, uint16(len(o.Credential)))
	return append(b, o.Credential...), nil
}

// ReadHeader reads a Header from r. It never reads past the header.
func ReadHeader(r io.Reader) (Header, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrMalformedHeader, err)
	}
	if hdr[0] != StreamVersion {
		return Header{}, fmt.Errorf("%w: version %d, want %d", ErrMalformedHeader, hdr[0], StreamVersion)
	}
	o := Header{Port: binary.BigEndian.Uint16(hdr[1:3])}
	n := int(binary.BigEndian.Uint16(hdr[3:5]))
	if n > MaxCredentialLen {
		return Header{}, fmt.Errorf("%w: credential of %d bytes exceeds %d", ErrMalformedHeader, n, MaxCredentialLen)
	}
	if n > 0 {
		o.Credential = make([]byte, n)
		if _, err := io.ReadFull(r, o.Credential); err != nil {
			return Header{}, fmt.Errorf("%w: credential: %w", ErrMalformedHeader, err)
		}
	}
	if o.Port == 0 {
		return Header{}, fmt.Errorf("%w: port 0", ErrMalformedHeader)
	}
	return o, nil
}

// AppendCredential appends the wire form of a Credential message.
func AppendCredential(b, cred []byte) ([]byte, error) {
	if len(cred) > MaxCredentialLen {
		return b, fmt.Errorf("credential of %d bytes exceeds %d", len(cred), MaxCredentialLen)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(cred)))
	return append(b, cred...), nil
}

// ReadCredential reads a Credential message; an empty one is nil.
func ReadCredential(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: credential: %w", ErrMalformedHeader, err)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > MaxCredentialLen {
		return nil, fmt.Errorf("%w: credential of %d bytes exceeds %d", ErrMalformedHeader, n, MaxCredentialLen)
	}
	if n == 0 {
		return nil, nil
	}
	cred := make([]byte, n)
	if _, err := io.ReadFull(r, cred); err != nil {
		return nil, fmt.Errorf("%w: credential: %w", ErrMalformedHeader, err)
	}
	return cred, nil
}

// StatusCode is a device's answer to a Header.
type StatusCode uint8

// Status codes. Values are part of the wire format.
const (
	StatusOK           StatusCode = 0
	StatusNotPublished StatusCode = 1
	StatusDenied       StatusCode = 2
	StatusRefused      StatusCode = 3
	StatusTimeout      StatusCode = 4
	StatusBadRequest   StatusCode = 5
	// StatusCredentialRequired is not final: msg names the fleet, and the
	// client answers with a Credential.
	StatusCredentialRequired StatusCode = 6
)

// String names the code for logs.
func (c StatusCode) String() string {
	switch c {
	case StatusOK:
		return "ok"
	case StatusNotPublished:
		return "not published"
	case StatusDenied:
		return "denied"
	case StatusRefused:
		return "refused"
	case StatusTimeout:
		return "timeout"
	case StatusBadRequest:
		return "bad request"
	case StatusCredentialRequired:
		return "credential required"
	}
	return fmt.Sprintf("status(%d)", uint8(c))
}

// Err returns the sentinel error for c, nil for StatusOK.
func (c StatusCode) Err() error {
	switch c {
	case StatusOK:
		return nil
	case StatusNotPublished:
		return ErrPortNotPublished
	case StatusDenied:
		return ErrDenied
	case StatusRefused:
		return ErrRefused
	case StatusTimeout:
		return ErrTimeout
	default:
		return ErrBadRequest
	}
}

// AppendStatus appends the wire form of a status to b; msg is cut to 255 bytes.
func AppendStatus(b []byte, c StatusCode, msg string) []byte {
	if len(msg) > 255 {
		msg = msg[:255]
	}
	b = append(b, byte(c), byte(len(msg)))
	return append(b, msg...)
}

// ReadStatus reads a Status from r.
func ReadStatus(r io.Reader) (StatusCode, string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, "", fmt.Errorf("read stream status: %w", err)
	}
	msg := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, msg); err != nil {
		return 0, "", fmt.Errorf("read stream status: %w", err)
	}
	return StatusCode(hdr[0]), printable(msg), nil
}

// printable is a device's reason as a client may show it: the device is
// not trusted to write to a terminal, so every byte but printable ASCII
// (what the agent sends) becomes '?', and an escape sequence cannot reach
// the user's terminal through `tunnel connect`'s error or a log line.
func printable(b []byte) string {
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}

// StatusError returns the sentinel error of a final status, wrapped with
// the device's reason, or nil for StatusOK.
func StatusError(code StatusCode, msg string) error {
	err := code.Err()
	if err != nil && msg != "" {
		return fmt.Errorf("%w: %s", err, msg)
	}
	return err
}

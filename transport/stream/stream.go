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
//	Header, client → device, version 1: a connect (what every device since
//	the first understands)
//	  version  uint8    1
//	  port     uint16   the published (remote) port the client wants, not 0
//	  credLen  uint16   length of cred, at most MaxCredentialLen
//	  cred     [credLen]byte  a credential for protected ports, or empty
//
//	Header, client → device, version 2: any other Kind
//	  version  uint8    2
//	  kind     uint8    KindHostKeys or KindPing (a connect is always sent
//	                    as version 1, so each request has one encoding)
//	  port     uint16   KindHostKeys: the published port whose SSH host keys
//	                    are asked, not 0; KindPing: 0
//	  credLen  uint16   as in version 1; KindPing: 0
//	  cred     [credLen]byte
//
// A device older than version 2 answers a version-2 Header with
// StatusBadRequest; a client that sent one reports ErrDeviceTooOld.
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
// After the Status with code StatusOK, what follows depends on the kind.
// KindConnect: both directions carry the TCP bytes verbatim; a FIN on the
// stream is a TCP half-close. KindPing: nothing; the device closes the
// stream. KindHostKeys: the device sends the HostKeys reply and closes the
// stream:
//
//	HostKeys, device → client, only after StatusOK to KindHostKeys
//	  count    uint8    number of keys, 1 to MaxHostKeys
//	  then count times:
//	    keyLen uint16   1 to MaxHostKeyLen
//	    key    [keyLen]byte  an SSH public key in wire format (RFC 4253
//	                         §6.6), as the port's sshd offered it
//
// A host-keys request passes the same access decision as a connect to
// that port (challenge included); a port whose service completes no SSH
// key exchange is answered StatusNotSSH. Any other final Status is
// followed by the device closing the stream.
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
	// ErrNotSSH: the service behind the port completed no SSH key
	// exchange (it is not sshd), so it has no host keys to vouch for.
	ErrNotSSH = errors.New("the service behind the port does not speak SSH")
	// ErrDeviceTooOld: the device rejected a version-2 Header, which every
	// device that knows version 2 parses: it runs an older tunnel.
	ErrDeviceTooOld = errors.New("device runs an older tunnel that cannot answer host keys or ping")
	// ErrClientGone (device side): the client reset the stream before
	// its header was read, or was gone when the device challenged or
	// accepted it. A header or credential that does not arrive in time is
	// ErrMalformedHeader, and answered as one.
	ErrClientGone = errors.New("client gone")
)

// Versions of the stream header: 1 carries connects, 2 the other kinds.
const (
	StreamVersion = 1
	KindVersion   = 2
)

// Kind is what a stream asks for. Values are part of the wire format.
type Kind uint8

// Kinds of request.
const (
	// KindConnect: a TCP connection to the port's local service.
	KindConnect Kind = 0
	// KindHostKeys: the SSH host keys of the port's local service.
	KindHostKeys Kind = 1
	// KindPing: an answer, at once; no port, no access decision.
	KindPing Kind = 2
)

// String names the kind for logs.
func (k Kind) String() string {
	switch k {
	case KindConnect:
		return "connect"
	case KindHostKeys:
		return "host keys"
	case KindPing:
		return "ping"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Bounds of the wire format.
const (
	// MaxCredentialLen bounds the credential in a Header.
	MaxCredentialLen = 8192
	// MaxHostKeys bounds the keys of a HostKeys reply, and MaxHostKeyLen
	// each key: an RSA key of 16384 bits is about 2 KiB.
	MaxHostKeys   = 16
	MaxHostKeyLen = 8192
)

// Header is what a client asks of a device on one stream.
type Header struct {
	Kind       Kind
	Port       uint16
	Credential []byte
}

// ErrMalformedHeader is returned for a stream header that does not parse.
var ErrMalformedHeader = errors.New("malformed stream header")

// AppendHeader appends the wire form of o to b: version 1 for a connect,
// version 2 for the other kinds.
func AppendHeader(b []byte, o Header) ([]byte, error) {
	if err := o.check(); err != nil {
		return b, err
	}
	if o.Kind == KindConnect {
		b = append(b, StreamVersion)
	} else {
		b = append(b, KindVersion, byte(o.Kind))
	}
	b = binary.BigEndian.AppendUint16(b, o.Port)
	b = binary.BigEndian.AppendUint16(b, uint16(len(o.Credential)))
	return append(b, o.Credential...), nil
}

// check reports what makes o unfit for the wire.
func (o Header) check() error {
	switch {
	case len(o.Credential) > MaxCredentialLen:
		return fmt.Errorf("credential of %d bytes exceeds %d", len(o.Credential), MaxCredentialLen)
	case o.Kind > KindPing:
		return fmt.Errorf("unknown request %v", o.Kind)
	case o.Kind == KindPing && (o.Port != 0 || len(o.Credential) != 0):
		return errors.New("a ping carries no port and no credential")
	case o.Kind != KindPing && o.Port == 0:
		return errors.New("port 0")
	}
	return nil
}

// ReadHeader reads a Header from r. It never reads past the header.
func ReadHeader(r io.Reader) (Header, error) {
	var v [1]byte
	if _, err := io.ReadFull(r, v[:]); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrMalformedHeader, err)
	}
	var o Header
	switch v[0] {
	case StreamVersion:
	case KindVersion:
		if _, err := io.ReadFull(r, v[:]); err != nil {
			return Header{}, fmt.Errorf("%w: %w", ErrMalformedHeader, err)
		}
		o.Kind = Kind(v[0])
		if o.Kind == KindConnect || o.Kind > KindPing {
			return Header{}, fmt.Errorf("%w: version %d with request %v", ErrMalformedHeader, KindVersion, o.Kind)
		}
	default:
		return Header{}, fmt.Errorf("%w: version %d, want %d or %d", ErrMalformedHeader, v[0], StreamVersion, KindVersion)
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrMalformedHeader, err)
	}
	o.Port = binary.BigEndian.Uint16(hdr[0:2])
	n := int(binary.BigEndian.Uint16(hdr[2:4]))
	if n > MaxCredentialLen {
		return Header{}, fmt.Errorf("%w: credential of %d bytes exceeds %d", ErrMalformedHeader, n, MaxCredentialLen)
	}
	if n > 0 {
		o.Credential = make([]byte, n)
		if _, err := io.ReadFull(r, o.Credential); err != nil {
			return Header{}, fmt.Errorf("%w: credential: %w", ErrMalformedHeader, err)
		}
	}
	if err := o.check(); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrMalformedHeader, err)
	}
	return o, nil
}

// AppendHostKeys appends the wire form of a HostKeys reply.
func AppendHostKeys(b []byte, keys [][]byte) ([]byte, error) {
	if len(keys) == 0 || len(keys) > MaxHostKeys {
		return b, fmt.Errorf("%d host keys, want 1 to %d", len(keys), MaxHostKeys)
	}
	b = append(b, byte(len(keys)))
	for _, k := range keys {
		if len(k) == 0 || len(k) > MaxHostKeyLen {
			return b, fmt.Errorf("host key of %d bytes, want 1 to %d", len(k), MaxHostKeyLen)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
		b = append(b, k...)
	}
	return b, nil
}

// ErrMalformedHostKeys is returned for a HostKeys reply that does not
// parse.
var ErrMalformedHostKeys = errors.New("malformed host keys reply")

// ReadHostKeys reads a HostKeys reply from r. It never reads past it, and
// allocates no more than the bytes that arrived (plus one key's worth).
func ReadHostKeys(r io.Reader) ([][]byte, error) {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:1]); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformedHostKeys, err)
	}
	count := int(n[0])
	if count == 0 || count > MaxHostKeys {
		return nil, fmt.Errorf("%w: %d keys, want 1 to %d", ErrMalformedHostKeys, count, MaxHostKeys)
	}
	keys := make([][]byte, 0, count)
	for i := range count {
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return nil, fmt.Errorf("%w: key %d: %w", ErrMalformedHostKeys, i+1, err)
		}
		l := int(binary.BigEndian.Uint16(n[:]))
		if l == 0 || l > MaxHostKeyLen {
			return nil, fmt.Errorf("%w: key %d of %d bytes, want 1 to %d", ErrMalformedHostKeys, i+1, l, MaxHostKeyLen)
		}
		k := make([]byte, l)
		if _, err := io.ReadFull(r, k); err != nil {
			return nil, fmt.Errorf("%w: key %d: %w", ErrMalformedHostKeys, i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
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
	// StatusNotSSH: to KindHostKeys, when the port's service completed no
	// SSH key exchange; msg says what went wrong.
	StatusNotSSH StatusCode = 7
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
	case StatusNotSSH:
		return "not ssh"
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
	case StatusNotSSH:
		return ErrNotSSH
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

package socks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// The client side: what `tunnel connect --socks`, the bench and the tests
// speak to a SOCKS5 server — the greeting offering no authentication (and
// username/password when given one), one CONNECT, the reply — as nc -X 5
// and curl do.

// ReplyError is a SOCKS server's refusal of a CONNECT.
type ReplyError struct {
	Server string // the SOCKS server's address
	Code   byte   // its reply code, never ReplySucceeded
}

func (e *ReplyError) Error() string {
	return fmt.Sprintf("SOCKS server %s: %s", e.Server, ReplyText(e.Code))
}

// Unwrap returns the error a tunnel socksd answers Code for (the most
// common one, where a code stands for several outcomes), so that
// dialer.Classify reads a refusal that crossed a SOCKS server as it reads
// one from a dialer.
func (e *ReplyError) Unwrap() error {
	switch e.Code {
	case ReplyNotAllowed:
		return stream.ErrDenied
	case ReplyHostUnreachable:
		return resolver.ErrOffline
	case ReplyConnectionRefused:
		return stream.ErrRefused
	case ReplyTTLExpired:
		return os.ErrDeadlineExceeded
	case ReplyNetworkUnreachable:
		return syscall.ENETUNREACH
	}
	return nil
}

// ReplyText explains a reply code to a person: what it says, and which
// outcomes a tunnel socksd sends it for (from dialer.Outcome, through
// OutcomeReply), e.g. "not allowed (0x02): access denied, or not a
// .tunnel host".
func ReplyText(code byte) string {
	name := replyName(code)
	if name == "" {
		name = "failed"
	}
	var why []string
	for o := dialer.OK + 1; o <= dialer.Failed; o++ {
		if OutcomeReply(o) == code && o.Explain() != name && o != dialer.Failed {
			why = append(why, o.Explain())
		}
	}
	text := fmt.Sprintf("%s (%#02x)", name, code)
	switch n := len(why); {
	case n == 1:
		text += ": " + why[0]
	case n > 1:
		text += ": " + strings.Join(why[:n-1], ", ") + ", or " + why[n-1]
	}
	return text
}

// replyName is what a reply code says, as a SOCKS client shows it ("" for
// a code it does not know). A switch, not a map literal: a map would be
// built at package init in every role, for the few that print replies.
func replyName(code byte) string {
	switch code {
	case ReplySucceeded:
		return "succeeded"
	case ReplyGeneralFailure:
		return "failed"
	case ReplyNotAllowed:
		return "not allowed"
	case ReplyNetworkUnreachable:
		return "network unreachable"
	case ReplyHostUnreachable:
		return "host unreachable"
	case ReplyConnectionRefused:
		return "refused"
	case ReplyTTLExpired:
		return "timed out"
	case ReplyCommandNotSupported:
		return "command not supported"
	case ReplyAddressNotSupported:
		return "address type not supported"
	}
	return ""
}

// ErrNoAcceptableMethod: the server accepts none of the methods offered
// (this client offers "no authentication", and username/password when it
// has one).
var ErrNoAcceptableMethod = errors.New("socks: server accepts no method offered")

// ErrAuthFailed: the server refused the username and password (or, for
// this socksd, refused to check them now: too many attempts).
var ErrAuthFailed = errors.New("socks: server refused the username and password")

// Auth is a username and password for a server that asks for them
// (method 0x02, RFC 1929).
type Auth struct {
	User, Password string
}

// Dial connects to host:port through the SOCKS5 server at server. It
// returns the connection ready for the proxied bytes, or an error: a
// *ReplyError when the server refused the CONNECT. Everything it does is
// bounded by ctx.
func Dial(ctx context.Context, server, host string, port uint16) (net.Conn, error) {
	return DialAuth(ctx, server, nil, host, port)
}

// DialAuth is Dial offering auth, if not nil, to a server that asks for a
// username and password.
func DialAuth(ctx context.Context, server string, auth *Auth, host string, port uint16) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, fmt.Errorf("connect to SOCKS server %s: %w", server, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	// Cancelling ctx interrupts the handshake by moving the deadline.
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	err = HandshakeAuth(c, auth, host, port)
	stop()
	if err != nil && ctx.Err() == nil {
		if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
			// The connection's deadline, which is ctx's, passed first.
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
	} else if err != nil {
		err = fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// Handshake runs the client side on c, a connection to a SOCKS5 server:
// greeting, method selection, CONNECT to host:port (a name goes as a name,
// an IP literal as an address), reply. It reads exactly the server's
// messages, so the proxied bytes that follow stay in c.
func Handshake(c net.Conn, host string, port uint16) error {
	return HandshakeAuth(c, nil, host, port)
}

// HandshakeAuth is Handshake offering auth, if not nil: the greeting
// offers both "no authentication" and username/password, and the
// credentials are sent only to a server that chooses the latter.
func HandshakeAuth(c net.Conn, auth *Auth, host string, port uint16) error {
	server := c.RemoteAddr().String()
	req, err := AppendRequest(nil, Request{Cmd: CmdConnect, Host: host, Port: port})
	if err != nil {
		return err
	}
	greeting := []byte{socksVersion, 1, methodNoAuth}
	var userPass []byte
	if auth != nil {
		if userPass, err = AppendUserPass(nil, auth.User, auth.Password); err != nil {
			return err
		}
		greeting = []byte{socksVersion, 2, methodNoAuth, methodUserPass}
	}
	// The request waits for the method selection, as nc -X 5 and curl
	// do: a server may drop bytes sent before it chose a method.
	if _, err := c.Write(greeting); err != nil {
		return fmt.Errorf("SOCKS server %s: %w", server, err)
	}
	var method [2]byte
	if _, err := io.ReadFull(c, method[:]); err != nil {
		return fmt.Errorf("SOCKS server %s: reading method selection: %w", server, err)
	}
	if method[0] != socksVersion {
		return fmt.Errorf("SOCKS server %s: %w (version byte %#02x)", server, ErrVersion, method[0])
	}
	switch {
	case method[1] == methodNoAuth:
	case method[1] == methodUserPass && auth != nil:
		if err := userPassExchange(c, userPass); err != nil {
			return fmt.Errorf("SOCKS server %s: %w", server, err)
		}
	case method[1] == methodNoAcceptable && auth == nil:
		return fmt.Errorf("SOCKS server %s: %w (it may want a username and password)", server, ErrNoAcceptableMethod)
	default:
		return fmt.Errorf("SOCKS server %s: %w (it chose %#02x)", server, ErrNoAcceptableMethod, method[1])
	}
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("SOCKS server %s: %w", server, err)
	}
	code, err := ReadReply(c)
	if err != nil {
		return fmt.Errorf("SOCKS server %s: %w", server, err)
	}
	if code != ReplySucceeded {
		return &ReplyError{Server: server, Code: code}
	}
	return nil
}

// userPassExchange sends the username/password request and reads the
// status.
func userPassExchange(c net.Conn, msg []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	var status [2]byte
	if _, err := io.ReadFull(c, status[:]); err != nil {
		return fmt.Errorf("reading username/password status: %w", err)
	}
	if status[0] != userPassVersion {
		return fmt.Errorf("username/password status: %w: version byte %#02x, want 0x01", ErrMalformed, status[0])
	}
	if status[1] != userPassOK {
		return ErrAuthFailed
	}
	return nil
}

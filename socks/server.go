package socks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
)

// DialFunc opens the upstream connection for a CONNECT to host:port
// (dialer.Dialer.Dial is one). It must return when ctx ends: Serve waits
// for it on shutdown. Its errors become reply codes through ReplyCode.
type DialFunc func(ctx context.Context, host string, port uint16) (transport.HalfConn, error)

// Server is a CONNECT-only SOCKS5 server. Without Auth it asks no
// password (method 0x00); with Auth it requires one (method 0x02). It
// answers SOCKS4 and SOCKS4a too (socks4.go), so that a client speaking
// them never waits for a timeout.
type Server struct {
	Dial             DialFunc       // required
	Log              zerolog.Logger // the zero value logs nothing
	HandshakeTimeout time.Duration  // time allowed for greeting, password and request; default 10s
	DialTimeout      time.Duration  // ctx deadline given to Dial; default 30s
	// Other, if set, gets the connections whose first byte is not SOCKS
	// version 5 or 4 (HTTP starts with a letter): socksd serves its PAC file
	// and HTTP CONNECT there. The first byte is still readable from c.
	// Other calls admitted once the client is authorized, to give back
	// its PreAuth slot (HTTPFront.ServeConn is one).
	Other func(ctx context.Context, c net.Conn, admitted func())
	// Auth, if set, requires every client to give a username and password
	// of its file (method 0x02, RFC 1929): a client offering only "no
	// authentication" gets 0xFF.
	Auth *Authenticator
	// Admit, if set and Auth is not, is asked about each client once its
	// request is read: an error refuses it with reply 0x02. Admit logs its
	// own refusals (socksd: OwnerOnly.Admit).
	Admit func(net.Conn) error
	// PreAuth, if set, bounds the connections not yet authorized, per
	// source and in all; one over it is closed unanswered.
	PreAuth *PreAuth
}

const (
	defaultHandshakeTimeout = 10 * time.Second
	defaultDialTimeout      = 30 * time.Second

	// Bounds of the pause after a failed Accept that may pass (a full file
	// table), so that the loop neither spins nor stays deaf for long.
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

var errNoAcceptableMethod = errors.New("socks: client offers no acceptable authentication method")

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return defaultHandshakeTimeout
}

func (s *Server) dialTimeout() time.Duration {
	if s.DialTimeout > 0 {
		return s.DialTimeout
	}
	return defaultDialTimeout
}

// Serve accepts on ln until ctx ends or ln fails, serving each connection
// with ServeConn. Serve owns ln and closes it when it returns. When ctx
// ends, every open connection is aborted, and Serve returns only after every
// goroutine it started has returned. It returns nil on ctx-driven shutdown.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if s.Dial == nil {
		ln.Close()
		return errors.New("socks: Server.Dial is nil")
	}
	return AcceptLoop(ctx, ln, s.Log, s.ServeConn)
}

// AcceptLoop accepts on ln until ctx ends or ln fails and runs serve for
// each connection in a goroutine of its own; serve must return when its ctx
// ends. AcceptLoop owns ln and closes it when it returns, and returns only
// after every serve has returned; nil on ctx-driven shutdown. Accept errors
// that mean a resource ran short (a full file table) are retried with a
// backoff, as net/http does; any other ends the loop.
func AcceptLoop(ctx context.Context, ln net.Listener, log zerolog.Logger, serve func(context.Context, net.Conn)) error {
	ctx, cancel := context.WithCancel(ctx)
	// Closing ln is the only way to interrupt Accept. Since every return
	// path cancels ctx, this always runs, and ln is always closed.
	stopCloser := afterFunc(ctx, func() { ln.Close() })
	var conns sync.WaitGroup
	defer func() {
		cancel()
		conns.Wait()
		stopCloser()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !isAcceptResourceErr(err) {
				return fmt.Errorf("accepting connections: %w", err)
			}
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			log.Warn().Err(err).Dur("retry_in", backoff).Msg("accept failed")
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil
			}
			continue
		}
		backoff = 0
		conns.Go(func() { serve(ctx, c) })
	}
}

// isAcceptResourceErr reports whether Accept failed for want of a resource
// that may come back, as net/http also retries. Anything else means ln is
// unusable. The errors are the system's own (acceptres_*.go): on Windows,
// Winsock's numbers, which syscall's EMFILE and friends never equal.
func isAcceptResourceErr(err error) bool {
	for _, e := range acceptResourceErrs {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ServeConn handles one accepted client connection and returns when it is
// finished, having closed c. Ending ctx aborts it at any stage.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	admitted, ok := s.PreAuth.acquire(c)
	if !ok {
		return
	}
	defer admitted()
	start := time.Now()
	client := transport.Conn(c)
	// Until splicing starts, ending ctx has to interrupt blocking reads and
	// writes on c; from then on Splice watches ctx itself.
	stopWatch := afterFunc(ctx, client.Abort)
	defer stopWatch()

	deadline := start.Add(s.handshakeTimeout())
	_ = c.SetDeadline(deadline)
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		s.Log.Debug().Str("client", remote(c)).Err(err).Msg("socks handshake failed")
		return
	}
	c = &prefixConn{Conn: c, prefix: first[:]}
	client = transport.Conn(c)
	switch {
	case first[0] == socks4Version:
		s.serveSOCKS4(ctx, c, client, admitted, stopWatch, start)
		return
	case first[0] != socksVersion && s.Other != nil:
		stopWatch()
		s.Other(ctx, c, admitted)
		return
	}
	req, user, err := s.handshake(ctx, c, deadline)
	if s.Auth == nil && s.Admit != nil && (err == nil || errors.Is(err, ErrAddressNotSupported)) {
		// A request came, so the refusal can be a reply the client shows.
		if err := s.Admit(c); err != nil {
			_, _ = c.Write(appendReply(nil, ReplyNotAllowed))
			return // Admit logged it, as often as it logs refusals
		}
	}
	switch {
	case errors.Is(err, ErrAddressNotSupported):
		// The request was cut off at ATYP, but the client still deserves
		// an answer it can show.
		code := ReplyCode(err)
		_, _ = c.Write(appendReply(nil, code))
		s.logRequest(s.Log, start, c, req, user, code, err, 0, 0)
		return
	case err != nil:
		// Scanners, HTTP clients on the wrong port, clients that gave up,
		// wrong passwords (Auth logged those): nothing to answer and
		// nothing worth more than a debug line.
		s.Log.Debug().Str("client", remote(c)).Err(err).Msg("socks handshake failed")
		return
	case req.Cmd != CmdConnect:
		err := fmt.Errorf("%w: %#02x", ErrCommandNotSupported, req.Cmd)
		code := ReplyCode(err)
		_, _ = c.Write(appendReply(nil, code))
		s.logRequest(s.Log, start, c, req, user, code, err, 0, 0)
		return
	}
	admitted()
	s.connect(ctx, s.Log, c, client, stopWatch, req, user, start, func(code byte) []byte { return appendReply(nil, code) })
}

// connect dials req for an admitted client, answers it with the reply
// encode makes of the SOCKS5 code, and splices.
func (s *Server) connect(ctx context.Context, log zerolog.Logger, c net.Conn, client transport.HalfConn, stopWatch func(), req Request, user string, start time.Time, encode func(code byte) []byte) {
	// Nothing touches c during the dial, so the handshake deadline passing
	// meanwhile does no harm; both deadlines are set afresh below.
	upstream, err := s.dial(ctx, req)
	code := ReplyCode(err)
	// A client that does not read its reply must not hold us here.
	_ = c.SetWriteDeadline(time.Now().Add(s.handshakeTimeout()))
	_, werr := c.Write(encode(code))
	if err != nil {
		s.logRequest(log, start, c, req, user, code, err, 0, 0)
		return
	}
	if werr != nil {
		upstream.Abort()
		upstream.Close()
		s.logRequest(log, start, c, req, user, code, fmt.Errorf("writing reply: %w", werr), 0, 0)
		return
	}
	// An established session may idle for as long as it likes.
	_ = c.SetDeadline(time.Time{})
	stopWatch()
	client = transport.Conn(drained(c)) // the handshake read the prefix
	up, down, err := transport.Splice(ctx, client, upstream)
	s.logRequest(log, start, c, req, user, code, err, up, down)
}

// handshake reads the greeting, selects a method, checks the username and
// password if Auth is set, and reads the request. It writes nothing but the
// method selection and the password status. user is the username checked.
func (s *Server) handshake(ctx context.Context, c net.Conn, deadline time.Time) (req Request, user string, err error) {
	methods, err := ReadGreeting(c)
	if err != nil {
		return Request{}, "", err
	}
	method := byte(methodNoAuth)
	if s.Auth != nil {
		method = methodUserPass
	}
	if bytes.IndexByte(methods, method) < 0 {
		_, _ = c.Write([]byte{socksVersion, methodNoAcceptable})
		err := fmt.Errorf("%w (offered % x)", errNoAcceptableMethod, methods)
		if s.Auth != nil {
			s.Auth.refuse(c.RemoteAddr(), "", fmt.Errorf("%w: %w", errNoCredentials, err))
		}
		return Request{}, "", err
	}
	if _, err := c.Write([]byte{socksVersion, method}); err != nil {
		return Request{}, "", fmt.Errorf("writing method selection: %w", err)
	}
	if s.Auth != nil {
		if user, err = s.authenticate(ctx, c, deadline); err != nil {
			return Request{}, user, err
		}
	}
	req, err = ReadRequest(c)
	return req, user, err
}

// authenticate reads the username and password, checks them and answers
// the status. A check waits for a slot until the handshake deadline.
func (s *Server) authenticate(ctx context.Context, c net.Conn, deadline time.Time) (string, error) {
	user, password, err := ReadUserPass(c)
	if err != nil {
		return "", err
	}
	actx, cancel := context.WithDeadline(ctx, deadline)
	err = s.Auth.Check(actx, c.RemoteAddr(), user, password)
	cancel()
	status := byte(userPassOK)
	if err != nil {
		status = userPassFailed
	}
	if _, werr := c.Write([]byte{userPassVersion, status}); werr != nil && err == nil {
		err = fmt.Errorf("writing username/password status: %w", werr)
	}
	return user, err
}

// dial calls s.Dial under DialTimeout and makes sure that success comes
// with a connection.
func (s *Server) dial(ctx context.Context, req Request) (transport.HalfConn, error) {
	if s.Dial == nil {
		return nil, errors.New("socks: Server.Dial is nil")
	}
	ctx, cancel := context.WithTimeout(ctx, s.dialTimeout())
	defer cancel()
	upstream, err := s.Dial(ctx, req.Host, req.Port)
	if err != nil {
		return nil, fmt.Errorf("dialing upstream: %w", err)
	}
	if upstream == nil {
		return nil, errors.New("socks: Dial returned neither a connection nor an error")
	}
	return upstream, nil
}

// logRequest writes the one line each request gets when it ends. Refusals
// the client or the network caused are routine (Info); a general failure
// may be ours (Warn).
func (s *Server) logRequest(log zerolog.Logger, start time.Time, c net.Conn, req Request, user string, code byte, err error, up, down int64) {
	ev := log.Info()
	if code == ReplyGeneralFailure {
		ev = log.Warn()
	}
	if ev == nil {
		return
	}
	ev = ev.Str("client", remote(c))
	if user != "" {
		ev = ev.Str("user", user)
	}
	if req.Cmd != CmdConnect {
		ev = ev.Str("cmd", fmt.Sprintf("%#02x", req.Cmd))
	}
	if req.AddrType != AddrIPv4 && req.AddrType != AddrDomain && req.AddrType != AddrIPv6 {
		ev = ev.Str("atyp", fmt.Sprintf("%#02x", req.AddrType))
	} else {
		ev = ev.Str("host", req.Host).Uint16("port", req.Port)
	}
	if id, isTunnel, perr := resolver.ParseName(req.Host); isTunnel && perr == nil {
		ev = ev.Str("peer", id.Short())
	}
	ev = ev.Str("reply", fmt.Sprintf("%#02x", code))
	if err != nil {
		ev = ev.Err(err)
	}
	msg := "socks connect"
	if req.Cmd != CmdConnect {
		msg = "socks request"
	}
	ev.Int64("up", up).Int64("down", down).Dur("dur", time.Since(start)).Msg(msg)
}

func remote(c net.Conn) string { return addrString(c.RemoteAddr()) }

// addrString is a.String() for logs, empty for no address.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// afterFunc is context.AfterFunc whose stop also waits for f if f has
// already started, so that f never outlives its owner. stop may be called
// more than once.
func afterFunc(ctx context.Context, f func()) (stop func()) {
	done := make(chan struct{})
	stopf := context.AfterFunc(ctx, func() {
		defer close(done)
		f()
	})
	return sync.OnceFunc(func() {
		if !stopf() {
			<-done
		}
	})
}

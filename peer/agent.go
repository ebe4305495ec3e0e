package peer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// Agent accepts end-to-end connections on its node and serves their
// streams.
type Agent struct {
	Node  *transport.Node
	Ports []Port
	Log   zerolog.Logger
	// DialTimeout bounds the local dial; default 5 s.
	DialTimeout time.Duration
	// HeaderTimeout bounds how long a new stream may take to send its
	// header; default 10 s.
	HeaderTimeout time.Duration
	// Fleet is the fleet whose members may use Protected ports.
	Fleet identity.ID
}

// Serve accepts connections until ctx ends, then closes them and returns
// after every goroutine it started has returned.
func (a *Agent) Serve(ctx context.Context) error {
	ln, err := a.Node.ListenPeers()
	if err != nil {
		return fmt.Errorf("listen for clients: %w", err)
	}
	defer ln.Close()
	ports := make(map[uint16]Port, len(a.Ports))
	for _, p := range a.Ports {
		ports[p.Remote] = p
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("accept client: %w", err)
		}
		wg.Go(func() { a.serveConn(ctx, conn, ports) })
	}
}

func (a *Agent) serveConn(ctx context.Context, conn *quic.Conn, ports map[uint16]Port) {
	peerID, err := transport.PeerConnID(conn)
	if err != nil {
		conn.CloseWithError(1, "no identity")
		return
	}
	log := a.Log.With().Str("peer", peerID.Short()).Logger()
	log.Debug().Msg("client connected")
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { conn.CloseWithError(0, "agent stopping") })
	defer stop()
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			log.Debug().Err(err).Msg("client gone")
			return
		}
		wg.Go(func() { a.serveStream(ctx, conn, peerID, str, ports, log) })
	}
}

func (a *Agent) serveStream(ctx context.Context, conn *quic.Conn, peerID identity.ID, str *quic.Stream, ports map[uint16]Port, log zerolog.Logger) {
	start := time.Now()
	hdrTimeout := a.HeaderTimeout
	if hdrTimeout == 0 {
		hdrTimeout = 10 * time.Second
	}
	deadline := time.Now().Add(hdrTimeout)
	_ = str.SetReadDeadline(deadline)
	open, err := transport.ReadOpen(str)
	if err != nil {
		var se *quic.StreamError
		if errors.As(err, &se) && se.Remote {
			// The client gave up before asking for anything.
			log.Debug().Err(err).Str("outcome", "client gone").Msg("stream")
			return
		}
		log.Warn().Err(err).Str("outcome", "bad request").Msg("stream")
		a.refuse(str, transport.StatusBadRequest, "malformed stream header")
		return
	}
	ev := func(lvl zerolog.Level, outcome string) *zerolog.Event {
		return log.WithLevel(lvl).Uint16("port", open.Port).Str("outcome", outcome)
	}
	p, ok := ports[open.Port]
	if !ok {
		ev(zerolog.InfoLevel, "not published").Msg("stream")
		a.refuse(str, transport.StatusNotPublished, fmt.Sprintf("port %d is not published", open.Port))
		return
	}
	d := authorize(p, peerID, open.Credential, a.Fleet, false, time.Now())
	if d.code == transport.StatusCredentialRequired {
		if _, err := str.Write(transport.AppendStatus(nil, d.code, d.reason)); err != nil {
			ev(zerolog.DebugLevel, "client gone").Err(err).Msg("stream")
			str.CancelRead(transport.StreamAborted)
			return
		}
		cred, err := transport.ReadCredential(str)
		if err != nil {
			ev(zerolog.InfoLevel, "client gone").Str("error", err.Error()).Msg("stream")
			a.refuse(str, transport.StatusBadRequest, "no credential")
			return
		}
		d = authorize(p, peerID, cred, a.Fleet, true, time.Now())
	}
	_ = str.SetReadDeadline(time.Time{})
	if d.code != transport.StatusOK {
		// The full client ID, so an admin can copy it into -private.
		ev(zerolog.WarnLevel, "denied").Str("client", peerID.String()).Str("access", p.Access.String()).
			Str("reason", d.reason).Msg("stream")
		a.refuse(str, transport.StatusDenied, d.reason)
		return
	}
	dialTimeout := a.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = 5 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	var nd net.Dialer
	local, err := nd.DialContext(dctx, "tcp", p.Target)
	cancel()
	if err != nil {
		code := transport.StatusRefused
		if isTimeout(err) {
			code = transport.StatusTimeout
		}
		ev(zerolog.WarnLevel, code.String()).Str("target", p.Target).Err(err).Msg("stream")
		a.refuse(str, code, "local service: "+errText(err))
		return
	}
	if p.ProxyProtocol {
		_ = local.SetWriteDeadline(time.Now().Add(dialTimeout))
		if _, err := local.Write(AppendProxyHeader(nil, peerID, p.Access)); err != nil {
			local.Close()
			ev(zerolog.WarnLevel, transport.StatusRefused.String()).Str("target", p.Target).Err(err).Msg("stream")
			a.refuse(str, transport.StatusRefused, "local service: "+errText(err))
			return
		}
		_ = local.SetWriteDeadline(time.Time{})
	}
	if _, err := str.Write(transport.AppendStatus(nil, transport.StatusOK, "")); err != nil {
		local.Close()
		str.CancelRead(transport.StreamAborted)
		str.CancelWrite(transport.StreamAborted)
		ev(zerolog.InfoLevel, "client gone").Err(err).Msg("stream")
		return
	}
	a.Node.CountStreams(conn, 1)
	up, down, err := transport.Splice(ctx, transport.Stream(str), transport.Conn(local))
	a.Node.CountStreams(conn, -1)
	e := ev(zerolog.InfoLevel, "ok")
	if err != nil {
		e = ev(zerolog.InfoLevel, "aborted").Str("error", errText(err))
	}
	e.Str("target", p.Target).Int64("up", up).Int64("down", down).Dur("dur", time.Since(start)).Msg("stream")
}

// refuse answers a stream with a failure status and ends it.
func (a *Agent) refuse(str *quic.Stream, code transport.StatusCode, msg string) {
	_ = str.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, _ = str.Write(transport.AppendStatus(nil, code, msg))
	str.CancelRead(transport.StreamAborted)
	str.Close()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(err, syscall.ETIMEDOUT)
}

func errText(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err.Error()
	}
	return err.Error()
}

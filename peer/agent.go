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
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// defaultDialTimeout bounds the dial to a port's local service, under the
// client's stream.AnswerTimeout so that the client hears why.
const defaultDialTimeout = 5 * time.Second

// Agent accepts end-to-end connections on its node and serves their
// streams.
type Agent struct {
	Node  *transport.Node
	Ports []Port
	Log   zerolog.Logger
	// DialTimeout bounds the local dial; default 5 s.
	DialTimeout time.Duration
	// HeaderTimeout bounds how long a new stream may take to send its
	// header; default stream.HeaderTimeout.
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
	ports := make(map[uint16]Port, len(a.Ports))
	for _, p := range a.Ports {
		ports[p.Remote] = p
	}
	err = transport.ServeConns(ctx, ln, func(ctx context.Context, conn *quic.Conn) { a.serveConn(ctx, conn, ports) })
	if err != nil {
		return fmt.Errorf("accept client: %w", err)
	}
	return nil
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
	in, err := stream.Accept(str, a.HeaderTimeout)
	if err != nil {
		if errors.Is(err, stream.ErrClientGone) {
			log.Debug().Err(err).Str("outcome", "client gone").Msg("stream")
		} else {
			log.Warn().Err(err).Str("outcome", "bad request").Msg("stream")
		}
		return
	}
	port := in.Header.Port
	ev := func(lvl zerolog.Level, outcome string) *zerolog.Event {
		return log.WithLevel(lvl).Uint16("port", port).Str("outcome", outcome)
	}
	p, ok := ports[port]
	if !ok {
		ev(zerolog.InfoLevel, "not published").Msg("stream")
		in.Refuse(stream.StatusNotPublished, fmt.Sprintf("port %d is not published", port))
		return
	}
	d := authorize(p, peerID, in.Header.Credential, a.Fleet, false, time.Now())
	if d.code == stream.StatusCredentialRequired {
		cred, err := in.Challenge(a.Fleet)
		if errors.Is(err, stream.ErrClientGone) {
			ev(zerolog.DebugLevel, "client gone").Err(err).Msg("stream")
			return
		} else if err != nil {
			ev(zerolog.InfoLevel, "client gone").Str("error", err.Error()).Msg("stream")
			return
		}
		d = authorize(p, peerID, cred, a.Fleet, true, time.Now())
	}
	if d.code != stream.StatusOK {
		// The full client ID, so an admin can copy it into -private.
		ev(zerolog.WarnLevel, "denied").Str("client", peerID.String()).Str("access", p.Access.String()).
			Str("reason", d.reason).Msg("stream")
		in.Refuse(stream.StatusDenied, d.reason)
		return
	}
	dialTimeout := a.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = defaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	var nd net.Dialer
	local, err := nd.DialContext(dctx, "tcp", p.Target)
	cancel()
	if err != nil {
		code := stream.StatusRefused
		if isTimeout(err) {
			code = stream.StatusTimeout
		}
		ev(zerolog.WarnLevel, code.String()).Str("target", p.Target).Err(err).Msg("stream")
		in.Refuse(code, "local service: "+errText(err))
		return
	}
	if p.ProxyProtocol {
		_ = local.SetWriteDeadline(time.Now().Add(dialTimeout))
		if _, err := local.Write(AppendProxyHeader(nil, peerID, p.Access)); err != nil {
			local.Close()
			ev(zerolog.WarnLevel, stream.StatusRefused.String()).Str("target", p.Target).Err(err).Msg("stream")
			in.Refuse(stream.StatusRefused, "local service: "+errText(err))
			return
		}
		_ = local.SetWriteDeadline(time.Time{})
	}
	s, err := in.Accept()
	if err != nil {
		local.Close()
		ev(zerolog.InfoLevel, "client gone").Err(err).Msg("stream")
		return
	}
	a.Node.CountStreams(conn, 1)
	up, down, err := transport.Splice(ctx, s, transport.Conn(local))
	a.Node.CountStreams(conn, -1)
	e := ev(zerolog.InfoLevel, "ok")
	if err != nil {
		e = ev(zerolog.InfoLevel, "aborted").Str("error", errText(err))
	}
	e.Str("target", p.Target).Int64("up", up).Int64("down", down).Dur("dur", time.Since(start)).Msg("stream")
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

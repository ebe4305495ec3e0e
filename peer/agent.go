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
	Node *transport.Node
	// Ports and Fleet are the port table Serve starts with; SetPorts
	// replaces it while the agent runs.
	Ports []Port
	Log   zerolog.Logger
	// DialTimeout bounds the local dial; default 5 s.
	DialTimeout time.Duration
	// HeaderTimeout bounds how long a new stream may take to send its
	// header; default stream.HeaderTimeout.
	HeaderTimeout time.Duration
	// Fleet is the fleet whose members may use Protected ports.
	Fleet identity.ID
	// Limits bound what clients cost before and after a port allows them;
	// zero fields take DefaultLimits.
	Limits Limits
	// Refused counts the connections and streams the Limits refused.
	Refused Refusals
	// Stats counts streams by outcome, and their bytes.
	Stats Stats

	keys *keyScanner // host-key scans, from Serve on
	live liveStreams // the port table in force and the streams it allows
}

// Serve accepts connections until ctx ends, then closes them and returns
// after every goroutine it started has returned.
func (a *Agent) Serve(ctx context.Context) error {
	ln, err := a.Node.ListenPeers()
	if err != nil {
		return fmt.Errorf("listen for clients: %w", err)
	}
	a.live.init(a.Ports, a.Fleet)
	adm := newAdmission(a.Limits)
	a.keys = newKeyScanner()
	err = transport.ServeConns(ctx, ln, func(ctx context.Context, conn *quic.Conn) { a.serveConn(ctx, conn, adm) })
	if err != nil {
		return fmt.Errorf("accept client: %w", err)
	}
	return nil
}

// Error codes a connection or stream is closed with when a limit refuses it.
const (
	codeBusy    quic.ApplicationErrorCode = 2
	codeLimited quic.StreamErrorCode      = 2
)

func (a *Agent) serveConn(ctx context.Context, conn *quic.Conn, adm *admission) {
	peerID, err := transport.PeerConnID(conn)
	if err != nil {
		conn.CloseWithError(1, "no identity")
		return
	}
	log := a.Log.With().Str("peer", peerID.Short()).Logger()
	release, over := adm.conns.Acquire(struct{}{})
	if over != "" {
		a.Refused.Conns.Add(1)
		a.refusal(adm, peerID, log, "connections", "too many clients")
		conn.CloseWithError(codeBusy, "too many clients")
		return
	}
	defer release()
	c := &client{id: peerID}
	if adm.allowed.has(peerID) {
		c.authorized.Store(true)
	} else if c.release, over = adm.unauth.Acquire(peerID); over != "" {
		a.Refused.Unauthorized.Add(1)
		a.refusal(adm, peerID, log, "unauthorized connections", "too many connections from a key no port allowed")
		conn.CloseWithError(codeBusy, "too many connections")
		return
	}
	defer func() {
		if c.release != nil {
			c.release()
		}
	}()
	log.Debug().Msg("client connected")
	if c.authorized.Load() || a.live.policy().admitsKey(peerID) {
		// A port admitted this key before, or admits it by its key alone:
		// direct paths may be sought at once (a protected port's members
		// wait for their first stream, whose credential proves them).
		a.Node.Authorized(conn)
	}
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
		// Until a port allows the key, a few streams at a time: the rest
		// are reset here, before a goroutine or a log line is spent.
		counted := !c.authorized.Load()
		if counted && c.inflight.Add(1) > int32(adm.limits.UnauthorizedStreams) {
			c.inflight.Add(-1)
			a.Refused.Streams.Add(1)
			a.refusal(adm, peerID, log, "unauthorized streams", "too many streams before any port allowed the key")
			str.CancelRead(codeLimited)
			str.CancelWrite(codeLimited)
			continue
		}
		wg.Go(func() {
			if counted {
				defer c.inflight.Add(-1)
			}
			a.serveStream(ctx, conn, c, str, adm, log)
		})
	}
}

// refusal logs what a limit refused, at most reportBurst lines per key per
// reportEvery.
func (a *Agent) refusal(adm *admission, id identity.ID, log zerolog.Logger, what, why string) {
	if ok, n := adm.report.Note(id.String(), time.Now()); ok {
		withSuppressed(log.Warn().Str("client", id.String()).Str("limit", what), n).Msg(why)
	}
}

// withSuppressed adds to a log line how many like it were not logged.
func withSuppressed(e *zerolog.Event, n int) *zerolog.Event {
	if n > 0 {
		return e.Int("suppressed", n)
	}
	return e
}

// authorized records that a port allowed c's key: its connection is no
// longer capped as unauthorized, its next connections are not either, and
// the node may look for a direct path to it.
func (a *Agent) authorized(adm *admission, conn *quic.Conn, c *client) {
	if c.authorized.Swap(true) {
		return // done when it was set: at connect, or by an earlier stream
	}
	a.Node.Authorized(conn)
	adm.allowed.add(c.id)
	if c.release != nil {
		c.release() // its unauthorized slot (once, whoever calls)
	}
}

func (a *Agent) serveStream(ctx context.Context, conn *quic.Conn, c *client, str *quic.Stream, adm *admission, log zerolog.Logger) {
	start := time.Now()
	peerID := c.id
	// Outcomes a stranger can cause are logged at most reportBurst times per
	// key per reportEvery, with the number not logged since; those of an
	// allowed stream always are.
	note := func() (bool, int) { return adm.report.Note(peerID.String(), time.Now()) }
	in, err := stream.Accept(str, a.HeaderTimeout)
	if err != nil {
		if errors.Is(err, stream.ErrClientGone) {
			a.Stats.count(OutcomeClientGone)
			log.Debug().Err(err).Str("outcome", "client gone").Msg("stream")
		} else {
			a.Stats.count(OutcomeBadRequest)
			if ok, n := note(); ok {
				withSuppressed(log.Warn().Err(err).Str("outcome", "bad request"), n).Msg("stream")
			}
		}
		return
	}
	if in.Header.Kind == stream.KindPing {
		// Any client that got a connection may ask: it proves only that
		// the device is there, which the connection did already. It
		// authorizes nothing, and is counted as any stream of its client.
		err := in.Reply(nil)
		log.Debug().Err(err).Str("kind", "ping").Msg("stream")
		return
	}
	port := in.Header.Port
	ev := func(lvl zerolog.Level, outcome string) *zerolog.Event {
		e := log.WithLevel(lvl).Uint16("port", port).Str("outcome", outcome)
		if in.Header.Kind != stream.KindConnect {
			e = e.Str("kind", in.Header.Kind.String())
		}
		return e
	}
	pol := a.live.policy()
	p, ok := pol.ports[port]
	if !ok {
		a.Stats.count(OutcomeNotPublished)
		if ok, n := note(); ok {
			withSuppressed(ev(zerolog.InfoLevel, "not published"), n).Msg("stream")
		}
		in.Refuse(stream.StatusNotPublished, fmt.Sprintf("port %d is not published", port))
		return
	}
	cred := in.Header.Credential
	d := authorize(p, peerID, cred, pol.fleetOf(p), false, time.Now())
	if d.code == stream.StatusCredentialRequired {
		var err error
		cred, err = in.Challenge(pol.fleetOf(p))
		if errors.Is(err, stream.ErrClientGone) {
			a.Stats.count(OutcomeClientGone)
			ev(zerolog.DebugLevel, "client gone").Err(err).Msg("stream")
			return
		} else if err != nil {
			a.Stats.count(OutcomeClientGone)
			if ok, n := note(); ok {
				withSuppressed(ev(zerolog.InfoLevel, "client gone").Str("error", err.Error()), n).Msg("stream")
			}
			return
		}
		d = authorize(p, peerID, cred, pol.fleetOf(p), true, time.Now())
	}
	if d.code != stream.StatusOK {
		a.Stats.count(OutcomeDenied)
		// The full client ID, so an admin can copy it into -private.
		if ok, n := note(); ok {
			withSuppressed(ev(zerolog.WarnLevel, "denied").Str("client", peerID.String()).Str("access", p.Access.String()).
				Str("reason", d.reason), n).Msg("stream")
		}
		in.Refuse(stream.StatusDenied, d.reason)
		return
	}
	a.authorized(adm, conn, c)
	dial := func(ctx context.Context) (net.Conn, error) { return a.dialLocal(ctx, p, peerID) }
	if in.Header.Kind == stream.KindHostKeys {
		a.answerHostKeys(ctx, in, p, dial, ev)
		return
	}
	// From here the stream is tracked: a SetPorts that no longer allows
	// it ends it (sctx), whenever it comes.
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	untrack, d := a.live.track(pol, &liveStream{port: port, client: peerID, cred: cred, cancel: cancel})
	defer untrack()
	if d.code != stream.StatusOK {
		// The table changed while this stream was being decided.
		ev(zerolog.WarnLevel, "denied").Str("client", peerID.String()).Str("reason", d.reason).Msg("stream")
		in.Refuse(stream.StatusDenied, d.reason)
		return
	}
	local, err := dial(sctx)
	if err != nil {
		code := dialStatus(err)
		a.Stats.count(statusOutcome(code))
		ev(zerolog.WarnLevel, code.String()).Str("target", p.Target).Err(err).Msg("stream")
		in.Refuse(code, "local service: "+errText(err))
		return
	}
	s, err := in.Accept()
	if err != nil {
		local.Close()
		a.Stats.count(OutcomeClientGone)
		ev(zerolog.InfoLevel, "client gone").Err(err).Msg("stream")
		return
	}
	a.Node.CountStreams(conn, 1)
	// Counted on the local side: what it reads went to the client.
	up, down, err := transport.Splice(sctx, s, transport.Metered(transport.Conn(local), &a.Stats.ToClients, &a.Stats.FromClients))
	a.Node.CountStreams(conn, -1)
	e := ev(zerolog.InfoLevel, "ok")
	if r, revoked := errors.AsType[revokedError](context.Cause(sctx)); revoked {
		a.Stats.count(OutcomeRevoked)
		e = ev(zerolog.InfoLevel, "revoked").Str("reason", r.reason)
	} else if err != nil {
		a.Stats.count(OutcomeAborted)
		e = ev(zerolog.InfoLevel, "aborted").Str("error", errText(err))
	} else {
		a.Stats.count(OutcomeOK)
	}
	e.Str("target", p.Target).Int64("up", up).Int64("down", down).Dur("dur", time.Since(start)).Msg("stream")
}

// dialLocal dials p's local service within the agent's DialTimeout, and
// sends the PROXY header if p wants one.
func (a *Agent) dialLocal(ctx context.Context, p Port, client identity.ID) (net.Conn, error) {
	dialTimeout := a.DialTimeout
	if dialTimeout == 0 {
		dialTimeout = defaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	var nd net.Dialer
	local, err := nd.DialContext(dctx, "tcp", p.Target)
	cancel()
	if err != nil {
		return nil, err
	}
	if p.ProxyProtocol {
		_ = local.SetWriteDeadline(time.Now().Add(dialTimeout))
		if _, err := local.Write(AppendProxyHeader(nil, client, p.Access)); err != nil {
			local.Close()
			return nil, fmt.Errorf("send PROXY header: %w", err)
		}
		_ = local.SetWriteDeadline(time.Time{})
	}
	return local, nil
}

// statusOutcome is the Outcome of a stream refused with code.
func statusOutcome(code stream.StatusCode) Outcome {
	switch code {
	case stream.StatusTimeout:
		return OutcomeTimeout
	case stream.StatusNotSSH:
		return OutcomeNotSSH
	}
	return OutcomeRefused
}

// dialStatus is the answer to a local dial that failed.
func dialStatus(err error) stream.StatusCode {
	if isTimeout(err) {
		return stream.StatusTimeout
	}
	return stream.StatusRefused
}

// answerHostKeys answers a host-keys request that p allowed with the host
// keys of p's service.
func (a *Agent) answerHostKeys(ctx context.Context, in *stream.Incoming, p Port, dial dialFunc, ev func(zerolog.Level, string) *zerolog.Event) {
	keys, err := a.keys.HostKeys(ctx, p.Target, dial)
	if err != nil {
		code := stream.StatusNotSSH
		if _, ok := errors.AsType[dialError](err); ok {
			code = dialStatus(err)
		} else if !errors.Is(err, errNotSSH) && ctx.Err() != nil {
			return // the agent is stopping
		}
		reason := "local service: " + errText(err)
		if code == stream.StatusNotSSH {
			reason = "local service: " + err.Error()
		}
		a.Stats.count(statusOutcome(code))
		ev(zerolog.WarnLevel, code.String()).Str("target", p.Target).Err(err).Msg("stream")
		in.Refuse(code, reason)
		return
	}
	if len(keys) > stream.MaxHostKeys {
		keys = keys[:stream.MaxHostKeys]
	}
	body, err := stream.AppendHostKeys(nil, keys)
	if err == nil {
		err = in.Reply(body)
	}
	e := ev(zerolog.InfoLevel, "ok")
	if err != nil {
		a.Stats.count(OutcomeClientGone)
		e = ev(zerolog.InfoLevel, "client gone").Str("error", err.Error())
	} else {
		a.Stats.count(OutcomeOK)
	}
	e.Str("target", p.Target).Int("keys", len(keys)).Msg("stream")
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

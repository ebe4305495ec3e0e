package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/limit"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// SOCKS is the gateway's SOCKS5 front: socks.Server for <id>.tunnel names
// only, with the Limiter applied to each accepted connection (one
// connection is one stream).
//
// socks.DialFunc does not carry the client's address, so the limit is
// applied in Serve's accept loop: a connection within budget is served by
// the real server; one over it is handed to a server whose dial always
// fails with ErrRateLimited (wrapped in stream.ErrDenied), so the
// client still gets a proper SOCKS reply 0x02 after its handshake, within
// a short deadline. At most maxRejecting such answers run at a time; past
// that, over-limit connections are closed unanswered.
type SOCKS struct {
	Dialer  Dialer
	Limiter *Limiter       // nil: no limits
	Log     zerolog.Logger // one "socks connect" line per connection
	// DialTimeout bounds each dial; zero means DefaultDialTimeout.
	DialTimeout time.Duration
}

const (
	rejectTimeout = 2 * time.Second
	maxRejecting  = 256
)

// Dial is the SOCKS server's socks.DialFunc: .tunnel names reach the
// device (whose policy then sees the gateway's ID); anything else — other
// names, IP literals written as names or as addresses — is
// dialer.ErrNotTunnel (0x02). There is no fallback.
func (s *SOCKS) Dial(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
	id, isTunnel, err := resolver.ParseName(host)
	if err != nil {
		return nil, err
	}
	if !isTunnel {
		return nil, fmt.Errorf("%w: %q", dialer.ErrNotTunnel, trunc(host))
	}
	timeout := s.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return s.Dialer.DialDevice(ctx, id, port)
}

// Serve accepts on ln until ctx ends or ln fails. It owns ln and closes it.
// Ending ctx aborts every connection; Serve returns only after each has
// finished, and returns nil on ctx-driven shutdown.
func (s *SOCKS) Serve(ctx context.Context, ln net.Listener) error {
	timeout := s.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	srv := &socks.Server{Dial: s.Dial, Log: s.Log, DialTimeout: timeout}
	var rejecting atomic.Int32
	return socks.AcceptLoop(ctx, ln, s.Log, func(ctx context.Context, c net.Conn) {
		if s.Limiter == nil {
			srv.ServeConn(ctx, c)
			return
		}
		release, err := s.Limiter.Acquire(limit.AddrIP(c.RemoteAddr()))
		if err == nil {
			defer release()
			srv.ServeConn(ctx, c)
			return
		}
		if le, ok := errors.AsType[*LimitError](err); ok && le.Report {
			s.Log.Info().Str("client", c.RemoteAddr().String()).Int("suppressed", le.Suppressed).Err(err).
				Msg("socks rate limited")
		}
		if rejecting.Add(1) > maxRejecting {
			rejecting.Add(-1)
			c.Close()
			return
		}
		defer rejecting.Add(-1)
		refusal := fmt.Errorf("%w: %w", stream.ErrDenied, err)
		rej := &socks.Server{HandshakeTimeout: rejectTimeout, // and no log: logged above
			Dial: func(context.Context, string, uint16) (transport.HalfConn, error) { return nil, refusal }}
		rej.ServeConn(ctx, c)
	})
}

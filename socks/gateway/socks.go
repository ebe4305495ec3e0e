package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/transport"
)

// SOCKS is the gateway's SOCKS5 front: socks.Server for <id>.tunnel names
// only, with the Limiter applied to each accepted connection (one
// connection is one stream).
//
// socks.DialFunc does not carry the client's address, so the limit is
// applied in Serve's accept loop: a connection within budget is served by
// the real server; one over it is handed to a server whose dial always
// fails with ErrRateLimited (wrapped in transport.ErrDenied), so the
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

	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

// Dial is the SOCKS server's socks.DialFunc: .tunnel names reach the
// device (whose policy then sees the gateway's ID); anything else — other
// names, IP literals written as names or as addresses — is
// socks.ErrNotTunnel (0x02). There is no fallback.
func (s *SOCKS) Dial(ctx context.Context, req socks.Request) (transport.HalfConn, error) {
	id, isTunnel, err := resolver.ParseName(req.Host)
	if err != nil {
		return nil, err
	}
	if !isTunnel {
		return nil, fmt.Errorf("%w: %q", socks.ErrNotTunnel, trunc(req.Host))
	}
	timeout := s.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return s.Dialer.DialDevice(ctx, id, req.Port)
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
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	var conns sync.WaitGroup
	var rejecting atomic.Int32
	defer func() {
		cancel()
		stop()
		ln.Close()
		conns.Wait()
	}()

	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !isAcceptResourceErr(err) {
				return fmt.Errorf("gateway socks: accepting connections: %w", err)
			}
			backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
			s.Log.Warn().Err(err).Dur("retry_in", backoff).Msg("socks accept failed")
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
		if s.Limiter == nil {
			conns.Go(func() { srv.ServeConn(ctx, c) })
			continue
		}
		ip := addrIP(c.RemoteAddr())
		release, err := s.Limiter.Acquire(ip)
		if err == nil {
			conns.Go(func() {
				defer release()
				srv.ServeConn(ctx, c)
			})
			continue
		}
		if le, ok := errors.AsType[*LimitError](err); ok && le.Report {
			s.Log.Info().Str("client", c.RemoteAddr().String()).Int("suppressed", le.Suppressed).Err(err).
				Msg("socks rate limited")
		}
		if rejecting.Add(1) > maxRejecting {
			rejecting.Add(-1)
			c.Close()
			continue
		}
		refusal := fmt.Errorf("%w: %w", transport.ErrDenied, err)
		rej := &socks.Server{HandshakeTimeout: rejectTimeout, // and no log: Serve logged above
			Dial: func(context.Context, socks.Request) (transport.HalfConn, error) { return nil, refusal }}
		conns.Go(func() {
			defer rejecting.Add(-1)
			rej.ServeConn(ctx, c)
		})
	}
}

// isAcceptResourceErr reports whether Accept failed for want of a resource
// that may come back (as net/http and socks.Server also retry).
func isAcceptResourceErr(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

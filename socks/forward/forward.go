package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/limit"
)

const (
	// DefaultMaxConns is the cap on connections one bind serves at once.
	DefaultMaxConns = 256
	// DefaultDialTimeout bounds opening the stream for one connection.
	DefaultDialTimeout = 30 * time.Second

	// failureReportEvery: a bind logs at most one failed connection (and
	// one over its cap) per interval, the next saying how many it did not.
	failureReportEvery = 10 * time.Second
	// refuseDrain bounds what closing a refused connection waits for and
	// reads: its client has usually sent something already (ssh its
	// version line), and closing with unread bytes would reset it instead
	// of giving it a clean end of data.
	refuseDrain      = 500 * time.Millisecond
	refuseDrainBytes = 64 << 10
)

// Config is how a Forwarder reaches its target and what it may spend.
type Config struct {
	// Dial opens the stream for each connection (socksd's
	// dialer.Dialer.Dial, roles.Reacher.Dial); required.
	Dial socks.DialFunc
	Log  zerolog.Logger // the zero value logs nothing
	// AllowRemote lets a spec listen beyond loopback.
	AllowRemote bool
	// MaxConns caps the connections served at once; 0 is DefaultMaxConns.
	MaxConns int
	// DialTimeout bounds each Dial; 0 is DefaultDialTimeout.
	DialTimeout time.Duration
}

// ListenError is a port that could not be bound (in use, not permitted,
// no such address): a problem with what the user asked for, found at start.
type ListenError struct {
	Addr string
	Err  error
}

func (e *ListenError) Error() string { return "bind " + e.Addr + ": " + e.Err.Error() }
func (e *ListenError) Unwrap() error { return e.Err }

// Forwarder is one bound local port forwarding to one target.
type Forwarder struct {
	spec    Spec
	cfg     Config
	ln      net.Listener
	report  *limit.Reporter
	active  atomic.Int64
	overCap atomic.Uint64 // connections refused over MaxConns, for metrics
	served  atomic.Bool
}

// Listen checks spec (ErrRemote) and binds its port; the error of a port
// in use or not permitted names the address. The Forwarder serves nothing
// until Serve; Close releases the port if Serve is never called.
func Listen(ctx context.Context, spec Spec, cfg Config) (*Forwarder, error) {
	if cfg.Dial == nil {
		return nil, errors.New("forward: Config.Dial is nil")
	}
	if err := spec.CheckListen(cfg.AllowRemote); err != nil {
		return nil, err
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", spec.Listen())
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			err = oe.Err // the address is said once, below
		}
		var se *os.SyscallError
		if errors.As(err, &se) {
			err = se.Err // "bind: bind: …" says nothing more
		}
		return nil, &ListenError{Addr: spec.Listen(), Err: err}
	}
	return &Forwarder{spec: spec, cfg: cfg, ln: ln, report: limit.NewReporter(failureReportEvery, 1, 2)}, nil
}

// Addr is the bound address: the real port when the spec asked for 0.
func (f *Forwarder) Addr() net.Addr { return f.ln.Addr() }

// OverCap returns how many connections were refused over MaxConns.
func (f *Forwarder) OverCap() uint64 { return f.overCap.Load() }

// Spec is what f forwards.
func (f *Forwarder) Spec() Spec { return f.spec }

// String is the line a person reads: `127.0.0.1:2222 → garage.tunnel:22`.
func (f *Forwarder) String() string {
	return f.Addr().String() + " → " + f.spec.Target()
}

// Close releases the port of a Forwarder that Serve never ran on (Serve
// closes it itself).
func (f *Forwarder) Close() error {
	if f.served.Load() {
		return nil
	}
	return f.ln.Close()
}

// Serve accepts until ctx ends or the listener fails, forwarding each
// connection to the target. It owns the listener and returns only after
// every connection it accepted is gone; nil on ctx-driven shutdown.
func (f *Forwarder) Serve(ctx context.Context) error {
	if !f.served.CompareAndSwap(false, true) {
		return errors.New("forward: Serve called twice")
	}
	err := socks.AcceptLoop(ctx, f.ln, f.cfg.Log, f.serveConn)
	if err != nil {
		return fmt.Errorf("bind %s: %w", f.spec.Listen(), err)
	}
	return nil
}

// serveConn forwards one accepted connection, and closes it.
func (f *Forwarder) serveConn(ctx context.Context, c net.Conn) {
	if n := f.active.Add(1); n > int64(f.cfg.MaxConns) {
		f.active.Add(-1)
		f.overCap.Add(1)
		_ = c.Close()
		f.refused("cap", c, fmt.Errorf("%d connections already open on this bind", f.cfg.MaxConns))
		return
	}
	defer f.active.Add(-1)
	start := time.Now()
	client := transport.Conn(c)
	// While dialing nothing reads c, and Splice only watches ctx once it
	// runs: a shutdown meanwhile must still end this connection.
	stop := context.AfterFunc(ctx, client.Abort)
	dctx, cancel := context.WithTimeout(ctx, f.cfg.DialTimeout)
	up, err := f.cfg.Dial(dctx, f.spec.Host, f.spec.Port)
	cancel()
	if err == nil && up == nil {
		err = errors.New("forward: Dial returned neither a stream nor an error")
	}
	if err != nil {
		if ctx.Err() == nil {
			f.refused("dial", c, err)
			f.closeRefused(c)
		}
		stop()
		_ = c.Close()
		return
	}
	if !stop() { // ctx ended while dialing: c is aborted already
		up.Abort()
		up.Close()
		_ = c.Close()
		return
	}
	sent, received, err := transport.Splice(ctx, client, up)
	ev := f.cfg.Log.Debug()
	if err != nil && ctx.Err() == nil {
		ev = f.cfg.Log.Info().Err(err)
	}
	ev.Str("bind", f.Addr().String()).Str("target", f.spec.Target()).Str("client", addrString(c.RemoteAddr())).
		Int64("up", sent).Int64("down", received).Dur("dur", time.Since(start)).Msg("bind connection ended")
}

// closeRefused ends a connection that got no stream with a clean end of
// data: its client sees the server hang up, not a reset, at once.
func (f *Forwarder) closeRefused(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.SetReadDeadline(time.Now().Add(refuseDrain))
		_, _ = io.Copy(io.Discard, io.LimitReader(c, refuseDrainBytes))
	}
}

// refused logs a connection this bind could not serve, at most once per
// interval per kind.
func (f *Forwarder) refused(kind string, c net.Conn, err error) {
	ok, suppressed := f.report.Note(kind, time.Now())
	if !ok {
		return
	}
	ev := f.cfg.Log.Warn().Str("bind", f.Addr().String()).Str("target", f.spec.Target()).
		Str("client", addrString(c.RemoteAddr()))
	if o := dialer.Classify(err); kind == "dial" && o != dialer.Failed {
		ev = ev.Str("why", o.Explain())
	}
	if suppressed > 0 {
		ev = ev.Int("not_logged", suppressed)
	}
	ev.Err(err).Msg("bind connection refused")
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

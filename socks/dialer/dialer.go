// Package dialer turns a name into a stream to a device's port: the client
// half of the product, below every front door (socksd's SOCKS and HTTP
// CONNECT, the public gateway, `tunnel connect`). It keeps one end-to-end
// connection per device, shared by all streams to it, and one stream per
// dial; it remembers which fleet guards which device port; and it
// classifies every failure once (Classify), so each front door maps the
// same Outcome to its own words.
//
// Invariants: a Dialer dials devices only through its resolver.Client
// (which owns relays and routing); a connection is closed after
// IdleTimeout with no stream; every goroutine it starts ends by Close.
package dialer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// Timings of the dialer.
const (
	// peerDialTimeout bounds lookup plus the end-to-end handshake.
	peerDialTimeout = 10 * time.Second
	// defaultIdle is how long a device connection with no streams is kept.
	defaultIdle = 2 * time.Minute
	// directWait bounds, with --path direct, the wait for a direct path
	// once a stream is open.
	directWait = 10 * time.Second
)

// Config is what a Dialer is asked to do.
type Config struct {
	// Credential returns this node's membership credential for a fleet,
	// in wire form, or nil if it holds none. Nil: never any — a public
	// gateway must present none, or strangers would inherit it.
	Credential func(fleet identity.ID) []byte
	// Fallback dials hosts that are not .tunnel names; nil refuses them
	// with ErrNotTunnel.
	Fallback func(ctx context.Context, host string, port uint16) (transport.HalfConn, error)
	// Names resolves a pet name (one DNS label, lowercase) to a device,
	// for .tunnel names whose device label is not an ID; nil: IDs only
	// (the public gateway).
	Names func(label string) (identity.ID, bool)
	// IdleTimeout closes a device connection that has had no stream for
	// this long; zero means two minutes.
	IdleTimeout time.Duration
	Log         zerolog.Logger
}

// Dialer opens streams to devices by name. It is safe for concurrent use;
// Close stops everything it started.
type Dialer struct {
	res *resolver.Client
	cfg Config

	mu     sync.Mutex
	peers  map[identity.ID]*peerConn
	fleets map[guardedPort]identity.ID // learned from devices' challenges
	// retired: connections taken out of use (stale.go) that streams still
	// hold, for Close.
	retired   map[*peerConn]struct{}
	stopJumps func()
	closed    bool
	wg        sync.WaitGroup

	// Stats counts the streams opened to devices, for metrics.
	Stats Stats
}

type guardedPort struct {
	device identity.ID
	port   uint16
}

type peerConn struct {
	id      identity.ID
	ready   chan struct{} // closed when the dial has finished
	conn    *quic.Conn    // set before ready closes, nil on error
	err     error
	streams int
	idle    *time.Timer
	check   *peerCheck    // the liveness check running, if any (stale.go)
	gone    chan struct{} // closed when the connection is retired (stale.go)
}

// New returns a Dialer that reaches devices through res, whose Run must be
// running while the Dialer is used.
func New(res *resolver.Client, cfg Config) *Dialer {
	d := &Dialer{res: res, cfg: cfg, peers: make(map[identity.ID]*peerConn),
		fleets: make(map[guardedPort]identity.ID), retired: make(map[*peerConn]struct{})}
	d.stopJumps = res.Node().OnTimeJump(d.timeJumped)
	return d
}

// Dial opens a stream to host:port: a device port for a .tunnel name, the
// Fallback for any other host. It has the shape of socks.DialFunc.
func (d *Dialer) Dial(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
	id, isTunnel, err := d.Device(host)
	if err != nil {
		d.Stats.count(MalformedName)
		return nil, err
	}
	if !isTunnel {
		if d.cfg.Fallback == nil {
			d.Stats.count(NotTunnel)
			return nil, fmt.Errorf("%w: %s", ErrNotTunnel, host)
		}
		return d.cfg.Fallback(ctx, host, port)
	}
	return d.DialDevice(ctx, id, port)
}

// Device reports whether host is a .tunnel name and which device it names:
// by its ID, or by a pet name of Config.Names. A .tunnel name that is
// neither is an error wrapping resolver.ErrMalformedName.
func (d *Dialer) Device(host string) (id identity.ID, isTunnel bool, err error) {
	id, isTunnel, err = resolver.ParseName(host)
	if err == nil || d.cfg.Names == nil {
		return id, isTunnel, err
	}
	if named, ok := d.cfg.Names(resolver.DeviceLabel(host)); ok {
		return named, true, nil
	}
	return id, true, fmt.Errorf("%w (and no name %q is set: tunnel name list)", err, resolver.DeviceLabel(host))
}

// DialDevice opens a stream to port on device id and waits for the
// device's answer. Its errors wrap the sentinels Classify knows.
func (d *Dialer) DialDevice(ctx context.Context, id identity.ID, port uint16) (transport.HalfConn, error) {
	for attempt := 0; ; attempt++ {
		pc, err := d.acquire(ctx, id)
		if err != nil {
			d.Stats.count(Classify(err))
			return nil, err
		}
		s, err := d.open(ctx, pc, port)
		if err == nil {
			return s, nil
		}
		d.release(pc)
		// A connection that died under us (device restarted, relay said
		// gone), or whose device no longer answers on it (stale.go), is
		// replaced once with a fresh lookup.
		if attempt == 0 && ctx.Err() == nil && (pc.conn.Context().Err() != nil || errors.Is(err, errPeerSilent)) {
			if !errors.Is(err, errPeerSilent) {
				d.forget(pc) // a retired one keeps its established streams
			}
			continue
		}
		d.Stats.count(Classify(err))
		return nil, fmt.Errorf("open stream to %s:%d: %w", id.Short(), port, err)
	}
}

// acquire returns a live connection to id, dialing it if needed, and
// counts one more stream on it.
func (d *Dialer) acquire(ctx context.Context, id identity.ID) (*peerConn, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, net.ErrClosed
	}
	pc, ok := d.peers[id]
	if ok && pc.conn != nil && pc.conn.Context().Err() != nil {
		delete(d.peers, id)
		ok = false
	}
	if !ok {
		pc = &peerConn{id: id, ready: make(chan struct{}), gone: make(chan struct{})}
		d.peers[id] = pc
		d.wg.Go(func() { d.dial(pc) })
	}
	pc.streams++
	if pc.idle != nil {
		pc.idle.Stop()
	}
	d.mu.Unlock()
	select {
	case <-pc.ready:
	case <-ctx.Done():
		d.release(pc)
		return nil, fmt.Errorf("connect to %s: %w", id.Short(), ctx.Err())
	}
	if pc.err != nil {
		d.release(pc)
		return nil, pc.err
	}
	return pc, nil
}

// dial runs detached from any one caller, so that a client that gives up
// does not fail the others waiting on the same device.
func (d *Dialer) dial(pc *peerConn) {
	ctx, cancel := context.WithTimeout(context.Background(), peerDialTimeout)
	defer cancel()
	conn, err := d.res.DialPeer(ctx, pc.id)
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, err)
	}
	d.mu.Lock()
	pc.conn, pc.err = conn, err
	if err != nil {
		if d.peers[pc.id] == pc {
			delete(d.peers, pc.id)
		}
	} else if d.closed {
		conn.CloseWithError(0, "closing")
	}
	close(pc.ready)
	d.mu.Unlock()
	if err != nil {
		d.cfg.Log.Debug().Str("peer", pc.id.Short()).Err(err).Msg("connect to device failed")
		return
	}
	ep, _ := transport.AddrEndpoint(conn.RemoteAddr())
	d.cfg.Log.Debug().Str("peer", pc.id.Short()).Str("endpoint", ep.String()).Msg("connected to device")
	d.wg.Go(func() {
		<-conn.Context().Done()
		d.forget(pc)
		d.cfg.Log.Debug().Str("peer", pc.id.Short()).Msg("device connection closed")
	})
}

func (d *Dialer) open(ctx context.Context, pc *peerConn, port uint16) (transport.HalfConn, error) {
	req := d.request(pc, port)
	var s transport.HalfConn
	var guard identity.ID
	err := d.watched(ctx, pc, func(ctx context.Context) (err error) {
		s, guard, err = stream.Open(ctx, pc.conn, req)
		return err
	})
	d.learn(pc, req, guard)
	if err != nil {
		return nil, err
	}
	node := d.res.Node()
	if node.Mode() == transport.PathDirect {
		// --path direct: no payload byte crosses the relay. The stream's
		// opening may (its header and the device's answer are what lets
		// the device look for a direct path at all, for a protected
		// port); its payload waits for the direct path.
		wctx, cancel := context.WithTimeout(ctx, directWait)
		ep, _ := transport.AddrEndpoint(pc.conn.RemoteAddr())
		err := node.WaitDirect(wctx, ep)
		cancel()
		if err != nil {
			s.Abort()
			s.Close()
			return nil, fmt.Errorf("connect to %s: %w", pc.id.Short(), err)
		}
	}
	node.CountStreams(pc.conn, 1)
	return &countedStream{HalfConn: s, stats: &d.Stats, release: func() {
		node.CountStreams(pc.conn, -1)
		d.release(pc)
	}}, nil
}

// request is what a stream to port on pc asks, with the fleet known to
// guard that port, if any, so that its credential saves a round trip.
func (d *Dialer) request(pc *peerConn, port uint16) stream.Request {
	d.mu.Lock()
	known := d.fleets[guardedPort{pc.id, port}]
	d.mu.Unlock()
	return stream.Request{Port: port, Fleet: known, Credential: d.cfg.Credential}
}

// learn remembers guard, the fleet a device's challenge named for
// req.Port, for the next request.
func (d *Dialer) learn(pc *peerConn, req stream.Request, guard identity.ID) {
	if guard.IsZero() || guard == req.Fleet {
		return
	}
	d.mu.Lock()
	d.fleets[guardedPort{pc.id, req.Port}] = guard
	d.mu.Unlock()
}

// release counts one stream less on pc and starts its idle timer at zero.
func (d *Dialer) release(pc *peerConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pc.streams--
	if pc.streams > 0 || pc.conn == nil || d.closed {
		return
	}
	if _, ok := d.retired[pc]; ok {
		delete(d.retired, pc)
		go pc.conn.CloseWithError(0, "device did not answer")
		return
	}
	idle := d.cfg.IdleTimeout
	if idle == 0 {
		idle = defaultIdle
	}
	if pc.idle == nil {
		conn := pc.conn
		pc.idle = time.AfterFunc(idle, func() {
			d.mu.Lock()
			busy := pc.streams > 0
			d.mu.Unlock()
			if !busy {
				conn.CloseWithError(0, "idle")
			}
		})
	} else {
		pc.idle.Reset(idle)
	}
}

func (d *Dialer) forget(pc *peerConn) {
	d.mu.Lock()
	if d.peers[pc.id] == pc {
		delete(d.peers, pc.id)
	}
	delete(d.retired, pc)
	if pc.idle != nil {
		pc.idle.Stop()
	}
	d.mu.Unlock()
	if pc.conn != nil {
		pc.conn.CloseWithError(0, "")
	}
}

// Close closes every device connection and waits for the dialer's
// goroutines.
func (d *Dialer) Close() error {
	d.mu.Lock()
	d.closed = true
	var conns []*quic.Conn
	for id, pc := range d.peers {
		if pc.conn != nil {
			conns = append(conns, pc.conn)
		}
		if pc.idle != nil {
			pc.idle.Stop()
		}
		delete(d.peers, id)
	}
	for pc := range d.retired {
		conns = append(conns, pc.conn)
	}
	clear(d.retired)
	d.mu.Unlock()
	d.stopJumps()
	for _, c := range conns {
		c.CloseWithError(0, "closing")
	}
	d.wg.Wait()
	return nil
}

// countedStream releases its device connection's stream count once, and
// keeps Stats: its bytes as they pass, and its outcome when it ends (the
// first of Abort and Close decides: aborted or ok).
type countedStream struct {
	transport.HalfConn
	stats   *Stats
	once    sync.Once
	release func()
}

func (c *countedStream) Read(p []byte) (int, error) {
	n, err := c.HalfConn.Read(p)
	if n > 0 {
		c.stats.Received.Add(uint64(n))
	}
	return n, err
}

func (c *countedStream) Write(p []byte) (int, error) {
	n, err := c.HalfConn.Write(p)
	if n > 0 {
		c.stats.Sent.Add(uint64(n))
	}
	return n, err
}

func (c *countedStream) Abort() {
	c.HalfConn.Abort()
	c.once.Do(func() {
		c.stats.Aborted.Add(1)
		c.release()
	})
}

func (c *countedStream) Close() error {
	err := c.HalfConn.Close()
	c.once.Do(func() {
		c.stats.count(OK)
		c.release()
	})
	return err
}

// DirectFallback dials non-.tunnel hosts over plain TCP; socksd uses it
// only with --fallback direct on a loopback listener.
func DirectFallback(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		return nil, err
	}
	return transport.Conn(c), nil
}

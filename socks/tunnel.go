package socks

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
)

// Timeouts of the .tunnel dialer.
const (
	// peerDialTimeout bounds lookup plus the end-to-end handshake.
	peerDialTimeout = 10 * time.Second
	// statusTimeout bounds the wait for a device's answer to a stream; the
	// device itself gives up on its local dial after 5 s.
	statusTimeout = 8 * time.Second
	// defaultIdle is how long a device connection with no streams is kept.
	defaultIdle = 2 * time.Minute
	// goneGrace is how long a device reported gone by the relay may take
	// to show up again at the same endpoint (a relay restart) before its
	// connection is dropped.
	goneGrace = 5 * time.Second
)

// ErrNoDirectPath: with --path direct, no direct path to the device
// answered in time.
var ErrNoDirectPath = errors.New("no direct path")

// TunnelDialer opens streams to devices by name: one end-to-end QUIC
// connection per device, shared by all streams to it, one stream per
// CONNECT. It is safe for concurrent use; Close stops everything it started.
type TunnelDialer struct {
	Node     *transport.Node
	Resolver *resolver.Client
	Log      zerolog.Logger
	// Fallback dials hosts that are not .tunnel names; nil refuses them
	// with ErrNotTunnel.
	Fallback func(ctx context.Context, host string, port uint16) (transport.HalfConn, error)
	// IdleTimeout closes a device connection that has had no stream for
	// this long; zero means two minutes.
	IdleTimeout time.Duration
	// Credential returns this node's membership credential for a fleet,
	// in wire form, or nil if it holds none. Nil: never any.
	Credential func(fleet identity.ID) []byte

	mu     sync.Mutex
	peers  map[identity.ID]*peerConn
	fleets map[guardedPort]identity.ID // learned from devices' challenges
	closed bool
	wg     sync.WaitGroup
	init   sync.Once
}

type guardedPort struct {
	device identity.ID
	port   uint16
}

type peerConn struct {
	id       identity.ID
	ready    chan struct{} // closed when the dial has finished
	conn     *quic.Conn    // set before ready closes, nil on error
	endpoint transport.Endpoint
	err      error
	streams  int
	idle     *time.Timer
	checking bool
}

func (d *TunnelDialer) setup() {
	d.init.Do(func() {
		d.peers = make(map[identity.ID]*peerConn)
		d.fleets = make(map[guardedPort]identity.ID)
		d.Node.OnGone(d.onGone)
	})
}

// Dial implements DialFunc.
func (d *TunnelDialer) Dial(ctx context.Context, req Request) (transport.HalfConn, error) {
	id, isTunnel, err := resolver.ParseName(req.Host)
	if err != nil {
		return nil, err
	}
	if !isTunnel {
		if d.Fallback == nil {
			return nil, fmt.Errorf("%w: %s", ErrNotTunnel, req.Host)
		}
		return d.Fallback(ctx, req.Host, req.Port)
	}
	return d.DialDevice(ctx, id, req.Port)
}

// DialDevice opens a stream to port on device id and waits for the
// device's answer. Its errors wrap the resolver's and transport's sentinels
// (offline, not published, denied, refused, timeout).
func (d *TunnelDialer) DialDevice(ctx context.Context, id identity.ID, port uint16) (transport.HalfConn, error) {
	d.setup()
	for attempt := 0; ; attempt++ {
		pc, err := d.acquire(ctx, id)
		if err != nil {
			return nil, err
		}
		s, err := d.open(ctx, pc, port)
		if err == nil {
			return s, nil
		}
		d.release(pc)
		// A connection that died under us (device restarted, relay said
		// gone) is replaced once with a fresh lookup.
		if attempt == 0 && pc.conn.Context().Err() != nil && ctx.Err() == nil {
			d.forget(pc)
			continue
		}
		return nil, fmt.Errorf("open stream to %s:%d: %w", id.Short(), port, err)
	}
}

// acquire returns a live connection to id, dialing it if needed, and
// counts one more stream on it.
func (d *TunnelDialer) acquire(ctx context.Context, id identity.ID) (*peerConn, error) {
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
		pc = &peerConn{id: id, ready: make(chan struct{})}
		d.peers[id] = pc
		d.wg.Add(1)
		go d.dial(pc)
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
func (d *TunnelDialer) dial(pc *peerConn) {
	defer d.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), peerDialTimeout)
	defer cancel()
	route, err := d.Resolver.Route(ctx, pc.id)
	ep := route.Endpoint
	var conn *quic.Conn
	if err == nil {
		if route.Release == nil {
			conn, err = d.Node.DialPeer(ctx, pc.id, ep)
		} else {
			// Homed on another rendezvous node: its relay frames go
			// there, over a session kept while this connection lives.
			conn, err = d.Node.DialPeerVia(ctx, pc.id, ep, route.Relay)
			if err != nil {
				route.Release()
			} else {
				context.AfterFunc(conn.Context(), route.Release)
			}
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %w", os.ErrDeadlineExceeded, err)
		}
	}
	if err == nil && d.Node.Mode() == transport.PathDirect {
		// Streams wait for a direct path: --path direct never relays them.
		if err = d.Node.WaitDirect(ctx, ep); err != nil {
			conn.CloseWithError(0, "no direct path")
			err = fmt.Errorf("connect to %s: %w: %w", pc.id.Short(), ErrNoDirectPath, err)
		}
	}
	d.mu.Lock()
	pc.conn, pc.endpoint, pc.err = conn, ep, err
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
		d.Log.Debug().Str("peer", pc.id.Short()).Err(err).Msg("connect to device failed")
		return
	}
	d.Log.Debug().Str("peer", pc.id.Short()).Str("endpoint", ep.String()).Msg("connected to device")
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		<-conn.Context().Done()
		d.forget(pc)
		d.Log.Debug().Str("peer", pc.id.Short()).Msg("device connection closed")
	}()
}

func (d *TunnelDialer) open(ctx context.Context, pc *peerConn, port uint16) (transport.HalfConn, error) {
	str, err := pc.conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, err
	}
	abort := func() { str.CancelRead(transport.StreamAborted); str.CancelWrite(transport.StreamAborted) }
	stop := context.AfterFunc(ctx, abort)
	defer stop()
	gp := guardedPort{pc.id, port}
	d.mu.Lock()
	fleetID, guarded := d.fleets[gp]
	d.mu.Unlock()
	var cred []byte
	if guarded {
		cred = d.credential(fleetID)
	}
	hdr, err := transport.AppendOpen(nil, transport.Open{Port: port, Credential: cred})
	if err != nil {
		abort()
		return nil, err
	}
	if _, err := str.Write(hdr); err != nil {
		abort()
		return nil, err
	}
	_ = str.SetReadDeadline(time.Now().Add(statusTimeout))
	code, msg, err := transport.ReadStatus(str)
	if err == nil && code == transport.StatusCredentialRequired {
		fleetID, ferr := identity.ParseID(msg)
		if ferr != nil {
			abort()
			return nil, fmt.Errorf("device asked for a credential of fleet %q: %w", msg, ferr)
		}
		d.mu.Lock()
		d.fleets[gp] = fleetID
		d.mu.Unlock()
		cred = d.credential(fleetID)
		b, _ := transport.AppendCredential(nil, cred)
		if _, err = str.Write(b); err == nil {
			code, msg, err = transport.ReadStatus(str)
		}
		if err == nil && cred == nil && code == transport.StatusDenied {
			msg += fmt.Sprintf(" (this node holds no credential of fleet %s)", fleetID.Short())
		}
	}
	if err == nil {
		err = transport.StatusError(code, msg)
	}
	if err != nil {
		abort()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	_ = str.SetReadDeadline(time.Time{})
	d.Node.CountStreams(pc.conn, 1)
	return &countedStream{HalfConn: transport.Stream(str), release: func() {
		d.Node.CountStreams(pc.conn, -1)
		d.release(pc)
	}}, nil
}

func (d *TunnelDialer) credential(fleetID identity.ID) []byte {
	if d.Credential == nil {
		return nil
	}
	return d.Credential(fleetID)
}

// release counts one stream less on pc and starts its idle timer at zero.
func (d *TunnelDialer) release(pc *peerConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	pc.streams--
	if pc.streams > 0 || pc.conn == nil || d.closed {
		return
	}
	idle := d.IdleTimeout
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

func (d *TunnelDialer) forget(pc *peerConn) {
	d.mu.Lock()
	if d.peers[pc.id] == pc {
		delete(d.peers, pc.id)
	}
	if pc.idle != nil {
		pc.idle.Stop()
	}
	d.mu.Unlock()
	if pc.conn != nil {
		pc.conn.CloseWithError(0, "")
	}
}

// onGone runs when the relay says a device endpoint we sent to is not
// attached. That is final when the device left or restarted (a new
// endpoint), and passing when the relay itself restarted and the device has
// not re-registered yet; a lookup tells which.
func (d *TunnelDialer) onGone(ep transport.Endpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	for _, pc := range d.peers {
		if pc.conn == nil || pc.endpoint != ep || pc.checking {
			continue
		}
		pc.checking = true
		d.wg.Add(1)
		go d.checkGone(pc)
	}
}

func (d *TunnelDialer) checkGone(pc *peerConn) {
	defer d.wg.Done()
	ctx, cancel := context.WithTimeout(pc.conn.Context(), goneGrace)
	defer cancel()
	for {
		ep, err := d.Resolver.Lookup(ctx, pc.id)
		if err == nil && ep == pc.endpoint {
			d.mu.Lock()
			pc.checking = false
			d.mu.Unlock()
			return
		}
		if err == nil || errors.Is(err, resolver.ErrOffline) && ctx.Err() != nil {
			break // moved to a new endpoint, or still offline after the grace
		}
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
			continue
		}
		break
	}
	d.Log.Info().Str("peer", pc.id.Short()).Msg("device left its relay; dropping its connection")
	d.forget(pc)
}

// Close closes every device connection and waits for the dialer's
// goroutines.
func (d *TunnelDialer) Close() error {
	d.setup()
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
	d.mu.Unlock()
	for _, c := range conns {
		c.CloseWithError(0, "closing")
	}
	d.wg.Wait()
	return nil
}

// countedStream releases its device connection's stream count once.
type countedStream struct {
	transport.HalfConn
	once    sync.Once
	release func()
}

func (c *countedStream) Abort() {
	c.HalfConn.Abort()
	c.once.Do(c.release)
}

func (c *countedStream) Close() error {
	err := c.HalfConn.Close()
	c.once.Do(c.release)
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

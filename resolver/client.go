package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// RelayAddr is where a rendezvous node is: "host:port", optionally with
// the node's ID in front ("ID@host:port"), in which case a node proving any
// other key is refused.
type RelayAddr struct {
	ID       identity.ID // zero: not checked
	HostPort string
}

func (a RelayAddr) String() string {
	if a.ID.IsZero() {
		return a.HostPort
	}
	return a.ID.String() + "@" + a.HostPort
}

// ParseRelayAddr parses "host:port" or "ID@host:port".
func ParseRelayAddr(s string) (RelayAddr, error) {
	var a RelayAddr
	hp := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		id, err := identity.ParseID(s[:i])
		if err != nil {
			return a, fmt.Errorf("relay address %q: %w", s, err)
		}
		a.ID, hp = id, s[i+1:]
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return a, fmt.Errorf("relay address %q: want host:port or ID@host:port: %w", s, err)
	}
	if host == "" {
		return a, fmt.Errorf("relay address %q: empty host", s)
	}
	if _, err := net.LookupPort("udp", port); err != nil || port == "0" {
		return a, fmt.Errorf("relay address %q: bad port %q", s, port)
	}
	a.HostPort = hp
	return a, nil
}

// Client keeps a node registered at its rendezvous node and looks devices
// up there. Run owns the connection: it dials, registers, and redials with
// backoff and jitter whenever the connection ends, until its context ends.
type Client struct {
	Node  *transport.Node
	Relay RelayAddr
	// Relays, if it has more than one, replaces Relay: each connection
	// goes to the one of them whose handshake completes first (the
	// reachable node with the lowest RTT), so a node re-homes to another
	// when its relay dies.
	Relays    []RelayAddr
	Publishes bool // register as a device others may look up
	Log       zerolog.Logger
	// OnRegistered, if set, is called after each successful registration
	// with the node's address as the relay sees it.
	OnRegistered func(observed string)

	mu     sync.Mutex
	conn   *quic.Conn
	ready  chan struct{} // closed while conn is registered
	vias   map[string]*viaSession
	active RelayAddr // the relay of the current or last session
	viaWG  sync.WaitGroup
}

// lookupWait bounds how long a lookup waits for a relay connection that is
// down, so that a dead relay gives a fast, clear error.
const lookupWait = 3 * time.Second

// pingTimeout is how long a relay may take to answer a ping.
const pingTimeout = 5 * time.Second

func (c *Client) readyChan() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready == nil {
		c.ready = make(chan struct{})
	}
	return c.ready
}

// Run connects and stays connected until ctx ends; it returns nil then.
func (c *Client) Run(ctx context.Context) error {
	c.readyChan()

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.RandomizationFactor = 0.5
	var lastErr string
	for ctx.Err() == nil {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		// One line per distinct failure: a relay that stays down does not
		// fill the log.
		if msg := err.Error(); msg != lastErr {
			c.Log.Warn().Err(err).Str("relay", c.relayName()).Dur("retry_in", wait).Msg("relay connection lost")
			lastErr = msg
		} else {
			c.Log.Debug().Err(err).Dur("retry_in", wait).Msg("relay still unreachable")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	c.mu.Lock()
	for k, vs := range c.vias {
		vs.cancel()
		delete(c.vias, k)
	}
	c.mu.Unlock()
	c.viaWG.Wait()
	return nil
}

// session dials, registers, and waits for the connection to end.
func (c *Client) session(ctx context.Context) error {
	ra, conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.CloseWithError(0, "")
	flags := byte(0)
	if c.Publishes {
		flags |= flagPublishes
	}
	body := binary.BigEndian.AppendUint64(nil, uint64(c.Node.Endpoint()))
	body = append(body, flags)
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	status, reply, err := request(rctx, conn, reqRegister, body)
	cancel()
	if err != nil {
		return fmt.Errorf("register at relay %s: %w", ra, err)
	}
	if status != statusOK {
		return fmt.Errorf("register at relay %s: %s", ra, statusText(status))
	}
	c.mu.Lock()
	c.active = ra
	c.conn = conn
	close(c.ready)
	c.mu.Unlock()
	if ap, err := netip.ParseAddrPort(string(reply)); err == nil {
		c.Node.SetObserved(ap)
	}
	c.Log.Info().Str("relay", ra.String()).Str("observed", string(reply)).
		Str("endpoint", c.Node.Endpoint().String()).Msg("registered with relay")
	if c.OnRegistered != nil {
		c.OnRegistered(string(reply))
	}
	c.heartbeat(ctx, conn)
	c.mu.Lock()
	c.conn = nil
	c.ready = make(chan struct{})
	c.mu.Unlock()
	if err := context.Cause(conn.Context()); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// connect dials the relay (or the best of Relays) and makes it the
// node's current relay.
func (c *Client) connect(ctx context.Context) (RelayAddr, *quic.Conn, error) {
	if len(c.Relays) > 1 {
		return c.connectBest(ctx)
	}
	ra := c.Relay
	if len(c.Relays) == 1 {
		ra = c.Relays[0]
	}
	ap, err := resolveRelay(ra)
	if err != nil {
		return ra, nil, err
	}
	c.Node.SetRelay(ap)
	dctx, cancel := context.WithTimeout(ctx, transport.HandshakeTimeout+time.Second)
	conn, err := c.Node.DialRelay(dctx, ap, ra.ID)
	cancel()
	if err != nil {
		return ra, nil, fmt.Errorf("connect to relay %s: %w", ra, err)
	}
	return ra, conn, nil
}

func resolveRelay(ra RelayAddr) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", ra.HostPort)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve relay %s: %w", ra.HostPort, err)
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// connectBest dials every relay of Relays at once and keeps the first
// whose handshake completes.
func (c *Client) connectBest(ctx context.Context) (RelayAddr, *quic.Conn, error) {
	type result struct {
		ra   RelayAddr
		ap   netip.AddrPort
		conn *quic.Conn
		err  error
	}
	dctx, cancel := context.WithTimeout(ctx, transport.HandshakeTimeout+time.Second)
	defer cancel()
	results := make(chan result, len(c.Relays))
	for _, ra := range c.Relays {
		go func() {
			ap, err := resolveRelay(ra)
			if err != nil {
				results <- result{ra: ra, err: err}
				return
			}
			conn, err := c.Node.DialRelay(dctx, ap, ra.ID)
			if err != nil {
				err = fmt.Errorf("connect to relay %s: %w", ra, err)
			}
			results <- result{ra, ap, conn, err}
		}()
	}
	var best result
	var errs []error
	for range c.Relays {
		r := <-results
		switch {
		case r.err != nil:
			errs = append(errs, r.err)
		case best.conn == nil:
			best = r
			cancel() // the others lose
		default:
			r.conn.CloseWithError(0, "another relay answered first")
		}
	}
	if best.conn == nil {
		return c.Relays[0], nil, errors.Join(errs...)
	}
	c.Node.SetRelay(best.ap)
	return best.ra, best.conn, nil
}

// relayName names the relay for messages.
func (c *Client) relayName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.active.ID.IsZero() || c.active.HostPort != "" {
		return c.active.String()
	}
	if len(c.Relays) > 0 {
		var names []string
		for _, r := range c.Relays {
			names = append(names, r.String())
		}
		return strings.Join(names, ",")
	}
	return c.Relay.String()
}

// heartbeat pings the relay until the connection or ctx ends, and ends
// the connection when a ping goes unanswered.
func (c *Client) heartbeat(ctx context.Context, conn *quic.Conn) {
	t := time.NewTicker(transport.RelayPing)
	defer t.Stop()
	body := make([]byte, 32)
	for {
		select {
		case <-conn.Context().Done():
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		status, _, err := request(pctx, conn, reqPing, body)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil || status != statusOK {
			conn.CloseWithError(0, "ping unanswered")
			c.Log.Debug().Err(err).Msg("relay did not answer a ping")
			<-conn.Context().Done()
			return
		}
	}
}

// current returns the registered connection, waiting up to lookupWait.
func (c *Client) current(ctx context.Context) (*quic.Conn, error) {
	for {
		ready := c.readyChan()
		select {
		case <-ready:
			c.mu.Lock()
			conn := c.conn
			c.mu.Unlock()
			if conn != nil {
				return conn, nil
			}
		default:
			t := time.NewTimer(lookupWait)
			select {
			case <-ready:
				t.Stop()
				continue
			case <-t.C:
				return nil, fmt.Errorf("%w: no connection to %s", ErrRegistryUnavailable, c.relayName())
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, ctx.Err())
			}
		}
	}
}

// Lookup asks the rendezvous node where device id is. It returns an error
// wrapping ErrOffline for a device that is not online, and one wrapping
// ErrRegistryUnavailable when no relay could be asked. A device homed on
// another rendezvous node is looked up all the same (see Route for how to
// reach it).
func (c *Client) Lookup(ctx context.Context, id identity.ID) (transport.Endpoint, error) {
	ep, _, _, err := c.lookup(ctx, id)
	return ep, err
}

// lookup returns the device's endpoint and, for a device homed on another
// rendezvous node, that node's ID and advertise address.
func (c *Client) lookup(ctx context.Context, id identity.ID) (transport.Endpoint, identity.ID, string, error) {
	var home identity.ID
	conn, err := c.current(ctx)
	if err != nil {
		return 0, home, "", fmt.Errorf("look up %s: %w", id.Short(), err)
	}
	status, reply, err := request(ctx, conn, reqLookup, id[:])
	if err != nil {
		return 0, home, "", fmt.Errorf("look up %s: %w: %w", id.Short(), ErrRegistryUnavailable, err)
	}
	switch status {
	case statusOK:
		if len(reply) != 8 {
			return 0, home, "", fmt.Errorf("look up %s: %w", id.Short(), errMalformed)
		}
		return transport.Endpoint(binary.BigEndian.Uint64(reply)), home, "", nil
	case statusRedirect:
		if len(reply) <= 8+len(home) {
			return 0, home, "", fmt.Errorf("look up %s: %w", id.Short(), errMalformed)
		}
		copy(home[:], reply[8:])
		return transport.Endpoint(binary.BigEndian.Uint64(reply)), home, string(reply[8+len(home):]), nil
	case statusNotFound:
		return 0, home, "", fmt.Errorf("look up %s: %w", id.Short(), ErrOffline)
	case statusUnavailable:
		return 0, home, "", fmt.Errorf("look up %s: %w: %s answered that its shared registry is down", id.Short(), ErrRegistryUnavailable, c.relayName())
	}
	return 0, home, "", fmt.Errorf("look up %s: relay answered %s", id.Short(), statusText(status))
}

// Route is how to reach a device: its endpoint, and for a device homed on
// another rendezvous node, that node's address (dial with
// transport.Node.DialPeerVia) and Release, to call when no connection uses
// the route any more.
type Route struct {
	Endpoint transport.Endpoint
	Relay    netip.AddrPort // zero: this client's relay
	Release  func()         // nil for this client's relay
}

// Route looks device id up and, when a rendezvous node redirects to the
// device's home node, keeps a registered outer connection to that node
// open until every Route to it is released.
func (c *Client) Route(ctx context.Context, id identity.ID) (Route, error) {
	ep, home, addr, err := c.lookup(ctx, id)
	if err != nil || home.IsZero() {
		return Route{Endpoint: ep}, err
	}
	ap, release, err := c.acquireVia(ctx, RelayAddr{ID: home, HostPort: addr})
	if err != nil {
		return Route{}, fmt.Errorf("look up %s: home node %s: %w", id.Short(), addr, err)
	}
	return Route{Endpoint: ep, Relay: ap, Release: release}, nil
}

// viaSession is an outer connection to another rendezvous node, kept
// while routes use it.
type viaSession struct {
	refs   int
	ready  chan struct{}
	err    error
	ap     netip.AddrPort
	cancel context.CancelFunc
}

// acquireVia returns the address of a registered session at ra, opening
// it if needed.
func (c *Client) acquireVia(ctx context.Context, ra RelayAddr) (netip.AddrPort, func(), error) {
	key := ra.String()
	c.mu.Lock()
	if c.vias == nil {
		c.vias = make(map[string]*viaSession)
	}
	vs := c.vias[key]
	if vs == nil {
		vs = &viaSession{ready: make(chan struct{})}
		c.vias[key] = vs
		sctx, cancel := context.WithCancel(context.Background())
		vs.cancel = cancel
		c.viaWG.Go(func() { c.runVia(sctx, ra, vs) })
	}
	vs.refs++
	c.mu.Unlock()
	var once sync.Once
	release := func() {
		once.Do(func() {
			c.mu.Lock()
			vs.refs--
			if vs.refs == 0 {
				vs.cancel()
				if c.vias[key] == vs {
					delete(c.vias, key)
				}
			}
			c.mu.Unlock()
		})
	}
	select {
	case <-vs.ready:
	case <-ctx.Done():
		release()
		return netip.AddrPort{}, nil, ctx.Err()
	}
	if vs.err != nil {
		release()
		return netip.AddrPort{}, nil, vs.err
	}
	return vs.ap, release, nil
}

// runVia dials and registers at another rendezvous node (as a node that
// does not publish, with this node's endpoint) and keeps the connection
// until ctx ends or it fails.
func (c *Client) runVia(ctx context.Context, ra RelayAddr, vs *viaSession) {
	key := ra.String()
	fail := func(err error) {
		vs.err = err
		close(vs.ready)
		c.mu.Lock()
		if c.vias[key] == vs {
			delete(c.vias, key)
		}
		c.mu.Unlock()
	}
	ua, err := net.ResolveUDPAddr("udp", ra.HostPort)
	if err != nil {
		fail(fmt.Errorf("%w: resolve %s: %w", ErrRegistryUnavailable, ra.HostPort, err))
		return
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	dctx, cancel := context.WithTimeout(ctx, transport.HandshakeTimeout+time.Second)
	conn, err := c.Node.DialRelay(dctx, ap, ra.ID)
	cancel()
	if err != nil {
		fail(fmt.Errorf("%w: connect to %s: %w", ErrRegistryUnavailable, ra, err))
		return
	}
	defer conn.CloseWithError(0, "")
	body := binary.BigEndian.AppendUint64(nil, uint64(c.Node.Endpoint()))
	body = append(body, 0)
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	status, _, err := request(rctx, conn, reqRegister, body)
	cancel()
	if err == nil && status != statusOK {
		err = errors.New(statusText(status))
	}
	if err != nil {
		fail(fmt.Errorf("%w: register at %s: %w", ErrRegistryUnavailable, ra, err))
		return
	}
	c.Node.AddRelay(ap)
	defer c.Node.RemoveRelay(ap)
	vs.ap = ap
	close(vs.ready)
	c.Log.Debug().Str("relay", ra.String()).Msg("registered with a device's home node")
	c.heartbeat(ctx, conn)
	c.mu.Lock()
	if c.vias[key] == vs {
		delete(c.vias, key)
	}
	c.mu.Unlock()
}

func request(ctx context.Context, conn *quic.Conn, typ byte, body []byte) (byte, []byte, error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return 0, nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(d)
	} else {
		_ = str.SetDeadline(time.Now().Add(requestTimeout))
	}
	stop := context.AfterFunc(ctx, func() { str.CancelRead(1); str.CancelWrite(1) })
	defer stop()
	if err := writeMsg(str, typ, body); err != nil {
		return 0, nil, err
	}
	str.Close()
	status, reply, err := readMsg(str)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, err
	}
	// Drain to EOF so the stream completes.
	_, _ = io.Copy(io.Discard, io.LimitReader(str, 1))
	return status, reply, nil
}

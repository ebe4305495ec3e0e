package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver/internal/wire"
	"github.com/tunnel-dev/tunnel/transport"
)

// Config is what a Client is asked to do.
type Config struct {
	// Relays are the rendezvous nodes to register with: with one, that
	// one; with several (nodes sharing a registry), each session goes to
	// the one whose handshake completes first (the reachable node with
	// the lowest RTT), so the node re-homes when its node dies.
	Relays []RelayAddr
	// Publishes registers the node as a device others may look up.
	Publishes bool
	Log       zerolog.Logger
}

// Client owns a node's rendezvous sessions and routing: it keeps the node
// registered at its home rendezvous node, looks devices up there, dials
// them (DialPeer), opens sessions to the home nodes of devices it is
// redirected to, and publishes the node's routing table. Run must be
// running for any of it; a Client is safe for concurrent use.
type Client struct {
	node *transport.Node
	cfg  Config

	mu        sync.Mutex
	conn      *quic.Conn    // the registered home session; nil while down or leased
	leased    bool          // registered on a lease, its connection closed
	ready     chan struct{} // closed while registered
	active    RelayAddr     // the relay of the current or last home session
	homeRoute transport.RelayRoute
	runCtx    context.Context // Run's; nil when Run is not running
	vias      map[string]*viaSession
	routes    map[transport.Endpoint][]*peerRoute // connections routed via another node, oldest first
	peers     map[*peerRoute]struct{}             // connections DialPeer made, alive
	wg        sync.WaitGroup                      // via sessions and gone checks
	jump      chan struct{}                       // closed at the next time jump (timejump.go)

	registrations atomic.Uint64
}

// NewClient returns a Client for node. It starts nothing: Run does.
func NewClient(node *transport.Node, cfg Config) *Client {
	return &Client{node: node, cfg: cfg, ready: make(chan struct{}), jump: make(chan struct{}),
		vias: make(map[string]*viaSession), routes: make(map[transport.Endpoint][]*peerRoute),
		peers: make(map[*peerRoute]struct{})}
}

// Node is the node whose sessions c owns.
func (c *Client) Node() *transport.Node { return c.node }

// Relays are the rendezvous nodes c was configured with.
func (c *Client) Relays() []RelayAddr { return c.cfg.Relays }

// Home returns the rendezvous node of the current home session, and
// whether the node is registered there now. Before the first session it
// returns the zero RelayAddr.
func (c *Client) Home() (RelayAddr, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.active, c.conn != nil || c.leased
}

// Leased reports whether the node is registered on a lease now (lease.go),
// with no connection to its home node open.
func (c *Client) Leased() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leased
}

// Registrations counts the node's registrations with a home node: one,
// and one more each time it registered again after losing its session.
func (c *Client) Registrations() uint64 { return c.registrations.Load() }

// WaitRegistered waits until the node is registered with its home node.
func (c *Client) WaitRegistered(ctx context.Context) error {
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run connects and stays connected until ctx ends, then closes every
// session it opened and returns nil once all its goroutines have ended.
func (c *Client) Run(ctx context.Context) error {
	if len(c.cfg.Relays) == 0 {
		return errors.New("resolver: no rendezvous node configured")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c.mu.Lock()
	if c.runCtx != nil {
		c.mu.Unlock()
		return errors.New("resolver: Run called twice")
	}
	c.runCtx = ctx
	c.mu.Unlock()
	c.wg.Go(func() { c.watchGone(ctx) })
	defer c.node.OnTimeJump(c.timeJumped)()

	bo := newBackoff()
	var lastErr string
	for ctx.Err() == nil {
		start := time.Now()
		err := c.homeSession(ctx)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > stableSession {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		// One line per distinct failure: a relay that stays down does not
		// fill the log.
		if msg := err.Error(); msg != lastErr {
			c.cfg.Log.Warn().Err(err).Str("relay", c.relayName()).Dur("retry_in", wait).Msg("relay connection lost")
			lastErr = msg
		} else {
			c.cfg.Log.Debug().Err(err).Dur("retry_in", wait).Msg("relay still unreachable")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	// No session may start once Wait has begun: acquireVia checks runCtx.
	c.mu.Lock()
	c.runCtx = nil
	c.mu.Unlock()
	cancel()
	c.wg.Wait()
	return nil
}

// newBackoff is the reconnect backoff of every session.
func newBackoff() *backoff.ExponentialBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = backoffFirst
	bo.MaxInterval = backoffMax
	bo.RandomizationFactor = backoffJitter
	return bo
}

// homeSession dials, registers, and holds the registration until it
// ends: with the connection, or with its lease (lease.go) when the relay
// granted one. After a network change, and when a lease is half gone, it
// registers again on a new connection before it lets the old registration
// go, so a device is never absent from the registry in between.
func (c *Client) homeSession(ctx context.Context) error {
	s, err := c.openHome(ctx, "")
	if err != nil {
		return err
	}
	for {
		why, err := c.hold(ctx, s)
		if why == "" {
			c.down(s)
			return err
		}
		next, nerr := c.openHome(ctx, why)
		if nerr != nil {
			// After a network change the new network may not carry
			// traffic yet: leave this session too, and let Run dial again
			// after its backoff.
			c.down(s)
			if why == whyNetwork {
				return fmt.Errorf("%w: %w", errNetworkChanged, nerr)
			}
			return nerr
		}
		s.conn.CloseWithError(0, why)
		if s.lease != nil && next.ap != s.ap {
			// Homed on another relay now: the old one would hold the
			// lease, and answer lookups for the device from memory, until
			// it idles out. (At the same relay the new registration
			// replaced it.)
			c.keepUntilAnswered(ctx, s, &s.seq, true, releaseWait, nil)
		}
		s = next
	}
}

// Why a home session registers again.
const (
	whyNetwork = "network changed"
	whyRenew   = "lease renewal"
)

// homeReg is a registered home session: its relay, its outer connection
// (closed once leased), and what the registration gave.
type homeReg struct {
	ra   RelayAddr
	ap   netip.AddrPort
	conn *quic.Conn
	registered
	seq uint64 // the last keep of the lease sent
}

// openHome dials the home relay (the best of several), registers, and
// makes the registration the live one. why says why it registers again,
// if it does.
func (c *Client) openHome(ctx context.Context, why string) (*homeReg, error) {
	ra, ap, conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if route := (transport.RelayRoute{Addr: ap, Name: ra.String()}); route != c.homeRoute {
		c.homeRoute = route
		c.publishRoutes()
	}
	c.mu.Unlock()
	reg, err := register(ctx, conn, c.node, c.cfg.Publishes, c.cfg.Publishes)
	if err != nil {
		conn.CloseWithError(0, "")
		return nil, fmt.Errorf("register at relay %s: %w", ra, err)
	}
	s := &homeReg{ra: ra, ap: ap, conn: conn, registered: reg}
	if s.lease != nil {
		if err := c.takeLease(ctx, s); err != nil {
			conn.CloseWithError(0, "")
			return nil, err
		}
	}
	c.mu.Lock()
	if c.conn == nil && !c.leased {
		close(c.ready)
	}
	c.active = ra
	c.conn, c.leased = conn, false
	if s.lease != nil {
		c.conn, c.leased = nil, true
	}
	c.mu.Unlock()
	c.registrations.Add(1)
	c.node.SetObserved(reg.observed)
	ev := c.cfg.Log.Info().Str("relay", ra.String()).Str("observed", reg.observed.String()).
		Str("endpoint", c.node.Endpoint().String()).Bool("leased", s.lease != nil)
	if why != "" {
		ev = ev.Str("why", why)
	}
	ev.Msg("registered with relay")
	return s, nil
}

// hold holds registration s until it ends (why "", and the cause), the
// host's network changes (whyNetwork), or its lease is to be renewed
// (whyRenew).
func (c *Client) hold(ctx context.Context, s *homeReg) (why string, err error) {
	if s.lease != nil {
		return c.keepLease(ctx, s)
	}
	if c.heartbeatUntilMoved(ctx, s.conn, c.cfg.Log) {
		return whyNetwork, nil
	}
	if err := context.Cause(s.conn.Context()); err != nil && ctx.Err() == nil {
		return "", err
	}
	return "", ctx.Err()
}

// down marks the node unregistered after session s ended.
func (c *Client) down(s *homeReg) {
	s.conn.CloseWithError(0, "")
	c.mu.Lock()
	c.conn, c.leased = nil, false
	c.ready = make(chan struct{})
	c.mu.Unlock()
}

// connect dials the relay, or the best of several.
func (c *Client) connect(ctx context.Context) (RelayAddr, netip.AddrPort, *quic.Conn, error) {
	if len(c.cfg.Relays) == 1 {
		ra := c.cfg.Relays[0]
		ap, conn, err := dialRelay(ctx, c.node, ra)
		return ra, ap, conn, err
	}
	type result struct {
		ra   RelayAddr
		ap   netip.AddrPort
		conn *quic.Conn
		err  error
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(c.cfg.Relays))
	for _, ra := range c.cfg.Relays {
		go func() {
			ap, conn, err := dialRelay(dctx, c.node, ra)
			results <- result{ra, ap, conn, err}
		}()
	}
	var best result
	var errs []error
	for range c.cfg.Relays {
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
		return c.cfg.Relays[0], netip.AddrPort{}, nil, errors.Join(errs...)
	}
	return best.ra, best.ap, best.conn, nil
}

// relayName names the relay for messages.
func (c *Client) relayName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.active != (RelayAddr{}) {
		return c.active.String()
	}
	return RelayListString(c.cfg.Relays)
}

// current returns the registered home connection, waiting up to
// lookupWait, and what to call when done with it. A node registered on a
// lease has none open: it gets a connection of its own to the same relay,
// which done closes.
func (c *Client) current(ctx context.Context) (conn *quic.Conn, done func(), err error) {
	t := time.NewTimer(lookupWait)
	defer t.Stop()
	for {
		c.mu.Lock()
		conn, leased, ra, ready := c.conn, c.leased, c.active, c.ready
		c.mu.Unlock()
		if conn != nil {
			return conn, func() {}, nil
		}
		if leased {
			_, conn, err := dialRelay(ctx, c.node, ra)
			if err != nil {
				return nil, nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
			}
			return conn, func() { conn.CloseWithError(0, "") }, nil
		}
		select {
		case <-ready:
		case <-t.C:
			return nil, nil, fmt.Errorf("%w: no connection to %s", ErrRegistryUnavailable, c.relayName())
		case <-ctx.Done():
			return nil, nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, ctx.Err())
		}
	}
}

// Lookup asks the home rendezvous node where device id is. It returns an
// error wrapping ErrOffline for a device that is not online, and one
// wrapping ErrRegistryUnavailable when no relay could be asked. A device
// homed on another rendezvous node is looked up all the same (DialPeer
// follows the redirect).
func (c *Client) Lookup(ctx context.Context, id identity.ID) (transport.Endpoint, error) {
	f, err := c.lookup(ctx, id)
	return f.Endpoint, err
}

func (c *Client) lookup(ctx context.Context, id identity.ID) (wire.Found, error) {
	conn, done, err := c.current(ctx)
	if err != nil {
		return wire.Found{}, fmt.Errorf("look up %s: %w", id.Short(), err)
	}
	defer done()
	status, reply, err := request(ctx, conn, wire.ReqLookup, wire.LookupBody(id))
	if err != nil {
		return wire.Found{}, fmt.Errorf("look up %s: %w: %w", id.Short(), ErrRegistryUnavailable, err)
	}
	switch status {
	case wire.StatusOK, wire.StatusRedirect:
		f, err := wire.ParseFound(status, reply)
		if err != nil {
			return f, fmt.Errorf("look up %s: %w", id.Short(), err)
		}
		return f, nil
	case wire.StatusNotFound:
		return wire.Found{}, fmt.Errorf("look up %s: %w", id.Short(), ErrOffline)
	case wire.StatusUnavailable:
		return wire.Found{}, fmt.Errorf("look up %s: %w: %s answered that its shared registry is down", id.Short(), ErrRegistryUnavailable, c.relayName())
	case wire.StatusBusy:
		return wire.Found{}, fmt.Errorf("look up %s: %w: %s is limiting this node's lookups", id.Short(), ErrRegistryUnavailable, c.relayName())
	}
	return wire.Found{}, fmt.Errorf("look up %s: relay answered %s", id.Short(), wire.StatusText(status))
}

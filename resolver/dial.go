package resolver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// peerRoute is one connection DialPeer made: the device, its Endpoint,
// and, for a device homed on another rendezvous node, the session its
// frames go through.
type peerRoute struct {
	id       identity.ID
	ep       transport.Endpoint
	via      *viaSession // nil: the home relay
	conn     *quic.Conn  // set once the handshake is done
	checking bool        // a gone check is running (guarded by Client.mu)
}

// DialPeer opens an end-to-end connection to device id. It looks the
// device up at the home rendezvous node and, when that node redirects to
// the device's home node, registers there too (a session kept for as long
// as connections are routed through it) and routes the device's frames
// through it. Its errors wrap ErrOffline, ErrRegistryUnavailable and
// transport.ErrPeerMismatch (a registry pointed at another key).
//
// The connection is the caller's to close. While it is open, a relay
// reporting the device gone makes the Client check where the device is,
// and close the connection if the device left or moved.
func (c *Client) DialPeer(ctx context.Context, id identity.ID) (*quic.Conn, error) {
	f, err := c.lookup(ctx, id)
	if err != nil {
		return nil, err
	}
	pr := &peerRoute{id: id, ep: f.Endpoint}
	if !f.Home.IsZero() {
		home := RelayAddr{ID: f.Home, HostPort: f.HomeAddr}
		vs, err := c.acquireVia(ctx, home)
		if err != nil {
			return nil, fmt.Errorf("look up %s: home node %s: %w", id.Short(), f.HomeAddr, err)
		}
		pr.via = vs
		c.mu.Lock()
		c.routes[pr.ep] = append(c.routes[pr.ep], pr)
		c.publishRoutes()
		c.mu.Unlock()
	}
	conn, err := c.node.DialPeer(ctx, id, f.Endpoint)
	if err != nil {
		c.drop(pr)
		return nil, err
	}
	pr.conn = conn
	c.mu.Lock()
	c.peers[pr] = struct{}{}
	c.mu.Unlock()
	context.AfterFunc(conn.Context(), func() { c.drop(pr) })
	return conn, nil
}

// drop forgets a connection DialPeer made: its route, and its reference
// on the via session.
func (c *Client) drop(pr *peerRoute) {
	c.mu.Lock()
	delete(c.peers, pr)
	if prs := c.routes[pr.ep]; slices.Contains(prs, pr) {
		if prs = slices.DeleteFunc(prs, func(p *peerRoute) bool { return p == pr }); len(prs) == 0 {
			delete(c.routes, pr.ep)
		} else {
			c.routes[pr.ep] = prs
		}
		c.publishRoutes()
	}
	c.mu.Unlock()
	if pr.via != nil {
		c.releaseVia(pr.via)
	}
}

// publishRoutes gives the node its routing table: the home relay, and
// each peer reached after a redirect routed via its home node while a
// session there is registered — the session its connection opened, or a
// later one to the same node. A peer with none falls back to the home
// relay, where it may have re-homed. With several connections to one peer
// the newest decides. The caller holds c.mu.
func (c *Client) publishRoutes() {
	var via map[transport.Endpoint]transport.RelayRoute
	for ep, prs := range c.routes {
		vs := c.vias[prs[len(prs)-1].via.key]
		if vs == nil || !vs.up {
			continue
		}
		if via == nil {
			via = make(map[transport.Endpoint]transport.RelayRoute)
		}
		via[ep] = vs.route
	}
	c.node.SetRoutes(c.homeRoute, via)
}

// viaSession is a registered outer connection to a device's home node, kept
// while connections are routed through it.
type viaSession struct {
	key    string
	refs   int // the connections routed through it, and dials waiting for it
	ready  chan struct{}
	err    error // set before ready closes, when the session failed
	route  transport.RelayRoute
	up     bool // registered, and not ended (guarded by Client.mu)
	cancel context.CancelFunc
}

// acquireVia returns a registered session at ra, opening one if none is,
// with one more reference on it; releaseVia gives the reference back.
func (c *Client) acquireVia(ctx context.Context, ra RelayAddr) (*viaSession, error) {
	key := ra.String()
	c.mu.Lock()
	if c.runCtx == nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("%w: the client is not running", ErrRegistryUnavailable)
	}
	vs := c.vias[key]
	if vs == nil {
		sctx, cancel := context.WithCancel(c.runCtx)
		vs = &viaSession{key: key, ready: make(chan struct{}), cancel: cancel}
		c.vias[key] = vs
		c.wg.Go(func() { c.runVia(sctx, ra, vs) })
	}
	vs.refs++
	c.mu.Unlock()
	select {
	case <-vs.ready:
	case <-ctx.Done():
		c.releaseVia(vs)
		return nil, ctx.Err()
	}
	if vs.err != nil {
		c.releaseVia(vs)
		return nil, vs.err
	}
	return vs, nil
}

func (c *Client) releaseVia(vs *viaSession) {
	c.mu.Lock()
	defer c.mu.Unlock()
	vs.refs--
	if vs.refs == 0 {
		vs.cancel()
		c.unlistVia(vs)
	}
}

// unlistVia drops vs from the sessions new dials may share, if it is still
// the one listed for its node. c.mu is held.
func (c *Client) unlistVia(vs *viaSession) {
	if c.vias[vs.key] == vs {
		delete(c.vias, vs.key)
	}
}

// runVia dials and registers at another rendezvous node (as a node that
// does not publish, with this node's Endpoint) and keeps a session there
// until ctx ends, when no connection is routed through it any more. A
// session that ends on its own (the node restarted, a ping went
// unanswered) is opened again with the home session's backoff, as the
// home session is: meanwhile the routes through it fall back to the home
// relay, which does not hold the device, so the connections would stall
// until their idle timeout. Only a failure to open the first session is
// final: it fails the dials waiting for it.
func (c *Client) runVia(ctx context.Context, ra RelayAddr, vs *viaSession) {
	// Its sessions have ended (viaSession took their routes down): what
	// is left to undo when runVia ends is its place in c.vias.
	forget := func() {
		c.mu.Lock()
		c.unlistVia(vs)
		c.mu.Unlock()
	}
	bo := newBackoff()
	for first := true; ; first = false {
		start := time.Now()
		registered, err := c.viaSession(ctx, ra, vs, first)
		if first && !registered {
			c.mu.Lock()
			c.unlistVia(vs)
			vs.err = fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
			close(vs.ready)
			c.mu.Unlock()
			return
		}
		if ctx.Err() != nil {
			forget()
			return
		}
		if time.Since(start) > stableSession {
			bo.Reset()
		}
		if errors.Is(err, errNetworkChanged) {
			continue // register again from the new network at once
		}
		wait := bo.NextBackOff()
		c.cfg.Log.Debug().Err(err).Str("relay", ra.String()).Dur("retry_in", wait).Msg("session with a device's home node lost")
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			forget()
			return
		case <-t.C:
		}
	}
}

// viaSession is one session of runVia: dial, register, route the
// connections of vs through it, and keep it until it or ctx ends. It
// reports whether it registered, and why it ended.
func (c *Client) viaSession(ctx context.Context, ra RelayAddr, vs *viaSession, first bool) (bool, error) {
	ap, conn, err := dialRelay(ctx, c.node, ra)
	if err != nil {
		return false, err
	}
	defer conn.CloseWithError(0, "")
	if _, err := register(ctx, conn, c.node, false, false); err != nil {
		return false, fmt.Errorf("register at %s: %w", ra, err)
	}
	c.mu.Lock()
	vs.route = transport.RelayRoute{Addr: ap, Name: ra.String()}
	vs.up = true
	if first {
		close(vs.ready)
	}
	c.publishRoutes() // routes of older connections to this node are live again
	c.mu.Unlock()
	if first {
		c.cfg.Log.Debug().Str("relay", ra.String()).Msg("registered with a device's home node")
	} else {
		c.cfg.Log.Info().Str("relay", ra.String()).Msg("registered again with a device's home node")
	}
	moved := c.heartbeatUntilMoved(ctx, conn, c.cfg.Log)
	c.mu.Lock()
	vs.up = false
	c.publishRoutes()
	c.mu.Unlock()
	if moved {
		return true, errNetworkChanged
	}
	return true, context.Cause(conn.Context())
}

// watchGone reads the node's gone notices until ctx ends.
func (c *Client) watchGone(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ep := <-c.node.Gone():
			c.mu.Lock()
			for pr := range c.peers {
				if pr.ep != ep || pr.checking {
					continue
				}
				pr.checking = true
				c.wg.Go(func() { c.checkGone(ctx, pr) })
			}
			c.mu.Unlock()
		}
	}
}

// checkGone decides what a gone notice for pr's Endpoint means. It is
// final when the device left or restarted (a new Endpoint), and passing
// when the relay itself restarted and the device has not registered again
// yet; lookups for goneGrace tell which. A device that left has its
// connection closed at once, instead of after an idle timeout.
func (c *Client) checkGone(ctx context.Context, pr *peerRoute) {
	gctx, cancel := context.WithTimeout(pr.conn.Context(), goneGrace)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	for {
		ep, err := c.Lookup(gctx, pr.id)
		if err == nil && ep == pr.ep {
			c.mu.Lock()
			pr.checking = false
			c.mu.Unlock()
			return
		}
		if err == nil || errors.Is(err, ErrOffline) && gctx.Err() != nil {
			break // moved to a new endpoint, or still offline after the grace
		}
		t := time.NewTimer(goneRecheck)
		select {
		case <-gctx.Done():
			t.Stop()
		case <-t.C:
			continue
		}
		break
	}
	if ctx.Err() != nil || pr.conn.Context().Err() != nil {
		return
	}
	c.cfg.Log.Info().Str("peer", pr.id.Short()).Msg("device left its relay; dropping its connection")
	pr.conn.CloseWithError(0, "device left its relay")
}

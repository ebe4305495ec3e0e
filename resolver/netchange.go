package resolver

import (
	"context"
	"errors"
	"fmt"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/transport"
)

// When the host's network changes (transport's netmon.go) the node must
// register again from its new address at once: the relay forwards frames
// to the address a registration came from, and only a registration tells
// the node its new public address (its candidate for direct paths). The
// outer connection itself might follow the node (quic-go migrates a
// connection whose packets come from a new address), but the relay moves
// its route only at the node's next ping, and says nothing of the new
// address; so the node dials a new session rather than wait. The new
// session is registered before the old one is closed: the relay takes the
// newest registration of an Endpoint as the live one, and a device is
// never absent from the registry in between.

// errNetworkChanged ends a session that a network change left behind.
var errNetworkChanged = errors.New("the host's network changed")

// heartbeatUntilMoved is heartbeat that also returns, with true, at the
// next network change of the node.
func (c *Client) heartbeatUntilMoved(ctx context.Context, conn *quic.Conn, log zerolog.Logger) (moved bool) {
	changed := c.node.NetworkChanged()
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-changed:
			moved = true
			cancel()
		case <-hctx.Done():
		}
	}()
	heartbeat(hctx, conn, log, c.jumped)
	cancel()
	<-done
	return moved && ctx.Err() == nil
}

// moveHome registers the node on a new home session after a network
// change, and returns it; the caller closes the old one.
func (c *Client) moveHome(ctx context.Context) (*quic.Conn, error) {
	ra, ap, conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	observed, err := register(ctx, conn, c.node, c.cfg.Publishes)
	if err != nil {
		conn.CloseWithError(0, "")
		return nil, fmt.Errorf("register at relay %s: %w", ra, err)
	}
	c.mu.Lock()
	c.active = ra
	c.conn = conn
	if route := (transport.RelayRoute{Addr: ap, Name: ra.String()}); route != c.homeRoute {
		c.homeRoute = route
		c.publishRoutes()
	}
	c.mu.Unlock()
	c.registrations.Add(1)
	c.node.SetObserved(observed)
	c.cfg.Log.Info().Str("relay", ra.String()).Str("observed", observed.String()).
		Str("endpoint", c.node.Endpoint().String()).Str("why", "network changed").Msg("registered with relay")
	return conn, nil
}

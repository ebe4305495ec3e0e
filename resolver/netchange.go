package resolver

import (
	"context"
	"errors"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"
)

// When the host's network changes (transport's netmon.go) the node must
// register again from its new address at once: the relay forwards frames
// to the address a registration came from, and only a registration tells
// the node its new public address (its candidate for direct paths). The
// outer connection itself might follow the node (quic-go migrates a
// connection whose packets come from a new address), and a lease's next
// keep would move the route, but neither says anything of the new
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

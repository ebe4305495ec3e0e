package resolver

import (
	"context"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/transport"
)

// A device's home registration on a lease (transport/lease.go): the relay
// granted one, the node closed its connection, and keeps the registration
// with a keep every transport.RelayPing, sent again every keepRetry until
// the relay answers. A relay that answers none for pingTimeout is gone, as
// a relay that answers no ping is: the session ends and Run dials again. A
// time jump keeps at once, with jumpPingTimeout, as heartbeat pings. When
// the node stops it releases the registration, so that lookups say
// offline at once rather than after the relay's idle time.

// takeLease keeps the lease just granted once while the registration's
// connection is still open: the relay lets the registration outlive the
// connection only after a keep (so a node that stopped before it got the
// grant leaves nothing behind), and a network that drops keeps is found
// here. Answered, the node closes the connection; lookups, rare on a
// device, dial their own (current). Unanswered, it holds the registration
// on the connection as without a lease.
func (c *Client) takeLease(ctx context.Context, s *homeReg) error {
	switch c.keepUntilAnswered(ctx, s, &s.seq, false, pingTimeout, nil) {
	case keepAnswered:
		s.conn.CloseWithError(0, "leased")
	case keepCanceled:
		c.keepUntilAnswered(context.Background(), s, &s.seq, true, releaseWait, nil)
		return ctx.Err()
	default:
		c.cfg.Log.Warn().Str("relay", s.ra.String()).Dur("waited", pingTimeout).
			Msg("relay answered no keep of the lease; holding the registration on the connection")
		s.lease = nil
	}
	return nil
}

// keepLease holds the leased registration s: see hold.
func (c *Client) keepLease(ctx context.Context, s *homeReg) (why string, err error) {
	changed := c.node.NetworkChanged()
	renew := time.NewTimer(s.ttl / 2)
	defer renew.Stop()
	tick := time.NewTicker(transport.RelayPing)
	defer tick.Stop()
	defer func() {
		if ctx.Err() != nil {
			c.keepUntilAnswered(context.Background(), s, &s.seq, true, releaseWait, nil)
		}
	}()
	for {
		timeout := pingTimeout
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-changed:
			return whyNetwork, nil
		case <-renew.C:
			return whyRenew, nil
		case <-c.jumped():
			timeout = jumpPingTimeout
		case <-tick.C:
		}
		switch c.keepUntilAnswered(ctx, s, &s.seq, false, timeout, changed) {
		case keepAnswered:
		case keepMoved:
			return whyNetwork, nil
		case keepCanceled:
			return "", ctx.Err()
		case keepUnanswered:
			return "", fmt.Errorf("relay %s answered no keep of the lease in %s", s.ra, timeout)
		}
	}
}

// How keepUntilAnswered ended.
type keepOutcome int

const (
	keepAnswered keepOutcome = iota
	keepUnanswered
	keepCanceled // ctx ended
	keepMoved    // the host's network changed
)

// keepUntilAnswered sends keeps of s (releases, with release), numbered
// on from *seq, one every keepRetry (or a third of timeout, if shorter),
// until the relay answers one or timeout passes.
func (c *Client) keepUntilAnswered(ctx context.Context, s *homeReg, seq *uint64, release bool, timeout time.Duration, changed <-chan struct{}) keepOutcome {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	retry := time.NewTicker(min(keepRetry, timeout/3))
	defer retry.Stop()
	first := *seq + 1
	for {
		*seq++
		// A keep that cannot leave (no route, say) is as lost as one the
		// network dropped: the deadline judges.
		if release {
			_ = c.node.ReleaseLease(s.ap, *s.lease, *seq)
		} else {
			_ = c.node.KeepLease(s.ap, *s.lease, *seq)
		}
		for sent := false; !sent; {
			select {
			case <-ctx.Done():
				return keepCanceled
			case <-changed:
				return keepMoved
			case got := <-c.node.Kept():
				// An answer to an earlier round's keep says nothing of
				// this round's.
				if got >= first {
					return keepAnswered
				}
			case <-retry.C:
				sent = true
			case <-deadline.C:
				return keepUnanswered
			}
		}
	}
}

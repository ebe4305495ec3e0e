package resolver

import "time"

// Time jumps (transport.Node.OnTimeJump): after a freeze or a sleep the
// rendezvous nodes have likely dropped this node's sessions. Each session's
// heartbeat pings at once on a jump, with a short timeout, so that a
// dropped session is registered again within a second or so instead of
// at its next failed ping.

// timeJumped wakes every session's heartbeat. It runs on the node's
// monitor and does not block.
func (c *Client) timeJumped(late time.Duration) {
	c.mu.Lock()
	close(c.jump)
	c.jump = make(chan struct{})
	c.mu.Unlock()
	c.cfg.Log.Info().Dur("late", late).Msg("time jumped; checking rendezvous sessions")
}

// jumped returns a channel closed at the next time jump.
func (c *Client) jumped() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jump
}

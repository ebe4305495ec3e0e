package registry

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/tunnel-dev/tunnel/transport"
)

// Leased registrations (transport/lease.go): a node that asked for a lease
// holds its registration with keep frames instead of its connection. The
// relay checks a keep's MAC and expiry before keep sees it; keep checks
// that it continues the registration it claims and moves the route to
// where it came from. A keep for a registration this node does not hold
// — it restarted since, and the MAC proves it leased this one — makes the
// registration again, and its record is written from a queue: keep runs
// on the socket's reader and must not wait for Redis. A leased
// registration lasts past its connection only once a keep came while the
// connection was open (serveConn): then the node holds the grant. One
// that hears no keep for leaseIdle after its connection closed is dropped
// like a connection that timed out.

// keep takes a keep whose MAC and expiry the relay checked (see
// transport.Relay.SetKeepHandler); it reports whether the relay should
// answer it.
func (s *Server) keep(k transport.Keep, from netip.AddrPort) bool {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.regs[k.Endpoint]
	switch {
	case ok:
		// Only the lease this registration holds, and only a newer keep
		// of it: a replayed keep moves nothing.
		if r.id != k.ID || !r.leased || r.expires != k.Expires || k.Seq <= r.seq {
			return false
		}
		if k.Release {
			if !s.queueRecord(r, true) {
				return false
			}
			s.dropLocked(r)
			s.Log.Info().Str("peer", k.ID.Short()).Str("endpoint", k.Endpoint.String()).Msg("node gone: released its lease")
			return true
		}
		r.seq, r.lastKeep = k.Seq, now
		if r.idleAt != nil {
			s.idle.MoveToBack(r.idleAt)
		}
		if r.addr != from {
			s.moveLocked(r, from, s.Log.With().Str("peer", k.ID.Short()).Logger())
		}
		return true
	case k.Release:
		return false
	case len(s.regs) >= s.guard.limits.MaxRegistrations:
		s.Refused.Registrations.Add(1)
		return false
	}
	r = &registration{id: k.ID, endpoint: k.Endpoint, device: k.Device, leased: true, expires: k.Expires,
		addr: from, seq: k.Seq, lastKeep: now}
	if !s.queueRecord(r, false) {
		return false
	}
	if r.device {
		s.Stats.Devices.Add(1)
	}
	r.detach = s.Relay.Attach(k.Endpoint, from)
	s.regs[k.Endpoint] = r
	r.idleAt = s.idle.PushBack(r)
	s.Log.Info().Str("peer", k.ID.Short()).Str("addr", from.String()).Str("endpoint", k.Endpoint.String()).
		Bool("device", k.Device).Msg("node registered again by its lease")
	return true
}

// recordOp is a device record to write (remove false) or remove.
type recordOp struct {
	r      *registration
	remove bool
}

// queueRecord queues the write or removal of r's record, if r is a
// device's, and reports whether there was room.
func (s *Server) queueRecord(r *registration, remove bool) bool {
	if !r.device {
		return true
	}
	select {
	case s.records <- recordOp{r, remove}:
		return true
	default:
		return false
	}
}

// writeRecords writes and removes the records queueRecord queued, until
// ctx ends.
func (s *Server) writeRecords(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case op := <-s.records:
			if op.remove {
				s.forget(op.r)
				continue
			}
			s.mu.Lock()
			live := s.regs[op.r.endpoint] == op.r
			s.mu.Unlock()
			if !live {
				continue
			}
			if err := s.Presence.Set(ctx, op.r.id, Record{Endpoint: op.r.endpoint}); err != nil {
				s.Stats.Errors.Add(1)
				if !errors.Is(err, ErrUnavailable) && ctx.Err() == nil {
					s.Log.Error().Err(err).Str("peer", op.r.id.Short()).Msg("record presence")
				}
			}
		}
	}
}

// sweepLeases drops the leased registrations that heard no keep for
// leaseIdle, until ctx ends. (A keep that comes between a sweep's look and
// its removal is answered all the same; the node's next keep registers it
// again.)
func (s *Server) sweepLeases(ctx context.Context) {
	idleFor := leaseIdle
	if s.leaseIdle > 0 {
		idleFor = s.leaseIdle
	}
	t := time.NewTicker(min(leaseSweep, idleFor/4))
	defer t.Stop()
	var idle []*registration
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Oldest keep first: the sweep takes what is due and stops, so
		// the lock, which keeps on the socket's reader wait for, is held
		// for the registrations it drops, not for all (a scan of 200k took
		// ~10 ms here).
		cutoff := time.Now().Add(-idleFor)
		s.mu.Lock()
		for e := s.idle.Front(); e != nil; e = s.idle.Front() {
			r := e.Value.(*registration)
			if !r.lastKeep.Before(cutoff) {
				break
			}
			s.idle.Remove(e)
			r.idleAt = nil
			idle = append(idle, r)
		}
		s.mu.Unlock()
		for i, r := range idle {
			s.unregister(r, s.Log.With().Str("peer", r.id.Short()).Logger())
			idle[i] = nil
		}
		idle = idle[:0]
	}
}

package dialer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/transport/stream"
)

// Stale connections. A device drops an end-to-end connection it has not
// heard from for its idle timeout; a client that was frozen or asleep
// meanwhile still holds it, and quic-go may even take the packets that
// queued in the socket during the freeze as signs of life. Streams opened
// on it then go unanswered until the client's own idle timeout, long after
// the user gave up. So a stream open that has no answer after
// staleAfter — a multiple of the path's minimum RTT, never under a
// second nor over four: far more than a live device needs to acknowledge a header — has
// the dialer ask whether the device is there at all: a ping stream
// (stream.Ping), which a device answers at once whatever its services do.
// That tells a dead connection from a live device whose service is slow to
// accept (its Status comes late, but its ping answer does not). A device
// that does not answer within aliveWait has its connection retired: no
// new stream goes to it, the waiting opens are cancelled and dial a fresh
// connection at once, and it is closed as soon as no stream uses it (its
// established streams, if any, are left to end on their own, in case the
// path was only lossy). One check runs per connection at a time, whoever
// asked.
//
// A jump in time (the node's monitor, transport.Node.OnTimeJump) checks
// every connection the same way at once, so that the first stream after
// a freeze finds a fresh one; opens already waiting on a connection found
// dead give up at that moment, not at their own deadline.

// Timings of stale-connection checks.
const (
	staleFloor = time.Second
	staleCeil  = 4 * time.Second
	staleRTTs  = 4
	aliveFloor = 500 * time.Millisecond
	aliveCeil  = 2 * time.Second
	aliveRTTs  = 4
)

// errPeerSilent: the device did not answer a ping on its connection in
// time; the connection was retired. It is a timeout for Classify.
var errPeerSilent = fmt.Errorf("the device did not answer a ping on its connection: %w", os.ErrDeadlineExceeded)

// staleAfter is how long a stream open on c waits for its answer before
// its connection is checked.
func staleAfter(c *quic.Conn) time.Duration {
	return clamp(staleRTTs*pathRTT(c.ConnectionStats()), staleFloor, staleCeil)
}

// aliveWait is how long a device has to answer the check's ping.
func aliveWait(c *quic.Conn) time.Duration {
	return clamp(aliveRTTs*pathRTT(c.ConnectionStats()), aliveFloor, aliveCeil)
}

// pathRTT is the round trip the checks scale with: the path's minimum, not
// its smoothed RTT. A process that was frozen reads, at the thaw, the
// acknowledgements that queued in its socket meanwhile, and quic-go takes
// each as an RTT sample as long as the freeze: the smoothed RTT jumps to
// tens of seconds at the very moment the checks must be quick (seen in
// TestFreeze: every open waited its full 8 s). The ceilings bound what
// any estimate can cost.
func pathRTT(st quic.ConnectionStats) time.Duration {
	if st.MinRTT > 0 {
		return st.MinRTT
	}
	return st.SmoothedRTT
}

func clamp(d, lo, hi time.Duration) time.Duration { return min(max(d, lo), hi) }

// peerCheck is one liveness check of a connection; alive is set before
// done closes.
type peerCheck struct {
	done  chan struct{}
	alive bool
}

// watched runs op, a stream open on pc's connection bounded by the ctx it
// is given. If op has no answer after staleAfter, pc is checked; when its
// device is gone, op is cancelled and watched returns an error wrapping
// errPeerSilent (pc is retired by then).
func (d *Dialer) watched(ctx context.Context, pc *peerConn, op func(context.Context) error) error {
	octx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(octx) }()
	wait := staleAfter(pc.conn)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-pc.gone: // another check (a time jump's) found it dead
	case <-t.C:
		check := d.check(pc)
		select {
		case err := <-done:
			return err
		case <-check.done:
			if check.alive {
				return <-done
			}
		case <-pc.gone:
		}
	}
	cancel()
	if err := <-done; err == nil {
		return nil // answered at the last moment: the stream works
	}
	return fmt.Errorf("no answer in %s: %w", wait.Round(time.Millisecond), errPeerSilent)
}

// check starts a liveness check of pc, or joins the one running.
func (d *Dialer) check(pc *peerConn) *peerCheck {
	d.mu.Lock()
	defer d.mu.Unlock()
	if pc.check != nil {
		return pc.check
	}
	c := &peerCheck{done: make(chan struct{})}
	if d.closed || isClosed(pc.gone) {
		close(c.done) // not alive: Close is closing it anyway
		return c
	}
	pc.check = c
	d.wg.Go(func() {
		conn := pc.conn
		wait := aliveWait(conn)
		ctx, cancel := context.WithTimeout(conn.Context(), wait)
		err := stream.Ping(ctx, conn)
		// Any answer shows the device holds the connection: a refusal
		// too (an older device rejects the ping's header).
		c.alive = err == nil || ctx.Err() == nil && conn.Context().Err() == nil && !isStreamReset(err)
		cancel()
		if !c.alive {
			d.cfg.Log.Info().Str("peer", pc.id.Short()).Dur("waited", wait).
				Msg("device did not answer on its connection; dialing a fresh one")
			d.retire(pc)
		}
		d.mu.Lock()
		pc.check = nil
		d.mu.Unlock()
		close(c.done)
	})
	return c
}

// isStreamReset reports whether err is a stream reset by this side (the
// check's own ctx ending), which is no answer.
func isStreamReset(err error) bool {
	se, ok := errors.AsType[*quic.StreamError](err)
	return ok && !se.Remote
}

// retire takes pc out of use: new streams dial a fresh connection, and pc
// is closed once no stream holds it (at once if none does). Close closes
// it in any case.
func (d *Dialer) retire(pc *peerConn) {
	d.mu.Lock()
	if d.peers[pc.id] == pc {
		delete(d.peers, pc.id)
	}
	if !isClosed(pc.gone) {
		close(pc.gone) // the opens waiting on it give up now
	}
	idle := pc.streams == 0
	if !idle && !d.closed {
		d.retired[pc] = struct{}{}
	}
	d.mu.Unlock()
	if idle {
		pc.conn.CloseWithError(0, "device did not answer")
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// timeJumped checks every connection at once: after a freeze or a sleep,
// any of them may have been dropped by its device.
func (d *Dialer) timeJumped(late time.Duration) {
	d.mu.Lock()
	var pcs []*peerConn
	for _, pc := range d.peers {
		select {
		case <-pc.ready:
			if pc.conn != nil {
				pcs = append(pcs, pc)
			}
		default:
		}
	}
	d.mu.Unlock()
	d.cfg.Log.Info().Dur("late", late).Int("connections", len(pcs)).Msg("time jumped; checking device connections")
	for _, pc := range pcs {
		d.check(pc)
	}
}

package transport

import (
	"sync"
	"time"
)

// Time jumps: a process that was frozen (SIGSTOP, a debugger) or a machine
// that slept comes back to a world that moved on without it. Its peers
// dropped the end-to-end connections it still holds (their idle timeout
// passed), its relay dropped its session, and yet quic-go may take the
// packets that queued in the socket meanwhile as signs of life and keep
// the dead connections for another idle timeout. Nothing in the protocol
// tells the node this happened; its own timers do: a ticker that fires
// much later than it was due. The node's owners (the rendezvous sessions,
// the dialer) subscribe with OnTimeJump and re-validate what they hold.
//
// Both clocks are read: the monotonic one goes on while a process is
// stopped, but on Linux not while the machine is suspended, when only
// the wall clock shows the gap. A wall clock stepped by NTP may raise a
// jump that was none; re-validating is cheap, so that is harmless.

// Timings of the time-jump monitor.
const (
	// jumpTick is the monitor's period.
	jumpTick = time.Second
	// jumpLate is how much later than due a tick must fire to count as a
	// jump: more than any scheduling delay of a busy machine.
	jumpLate = 3 * time.Second
)

// jumpMonitor calls its subscribers when its ticker fires more than late
// after it was due.
type jumpMonitor struct {
	tick, late time.Duration
	now        func() time.Time // time.Now; tests move it

	mu   sync.Mutex
	subs map[int]func(late time.Duration)
	next int

	stop chan struct{}
	done chan struct{}
}

func newJumpMonitor(tick, late time.Duration, now func() time.Time) *jumpMonitor {
	m := &jumpMonitor{tick: tick, late: late, now: now, subs: make(map[int]func(time.Duration)),
		stop: make(chan struct{}), done: make(chan struct{})}
	go m.run()
	return m
}

func (m *jumpMonitor) run() {
	defer close(m.done)
	t := time.NewTicker(m.tick)
	defer t.Stop()
	last := m.now()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		now := m.now()
		// Sub uses the monotonic readings; Round(0) strips them, leaving
		// the wall clock.
		gap := max(now.Sub(last), now.Round(0).Sub(last.Round(0)))
		last = now
		if late := gap - m.tick; late > m.late {
			m.fire(late)
		}
	}
}

func (m *jumpMonitor) fire(late time.Duration) {
	m.mu.Lock()
	subs := make([]func(time.Duration), 0, len(m.subs))
	for _, f := range m.subs {
		subs = append(subs, f)
	}
	m.mu.Unlock()
	for _, f := range subs {
		f(late)
	}
}

func (m *jumpMonitor) subscribe(f func(late time.Duration)) (cancel func()) {
	m.mu.Lock()
	id := m.next
	m.next++
	m.subs[id] = f
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.subs, id)
		m.mu.Unlock()
	}
}

func (m *jumpMonitor) close() {
	close(m.stop)
	<-m.done
}

// OnTimeJump registers f to be called each time the node notices a jump
// in time (its timers fired late by more than a few seconds: the process
// was frozen, or the machine slept), with how late. f runs on the
// monitor's goroutine and must not block: it starts what it needs under
// its own owner. cancel unregisters f; the monitor stops with the node.
func (n *Node) OnTimeJump(f func(late time.Duration)) (cancel func()) {
	return n.jumps.subscribe(f)
}

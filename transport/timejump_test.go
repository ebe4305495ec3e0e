package transport

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestTimeJumpMonitor: a clock moved forward by more than the threshold
// between two ticks is one jump, reported with how late; ticks on time
// are none; an unsubscribed callback is not called; the monitor stops.
func TestTimeJumpMonitor(t *testing.T) {
	var offset atomic.Int64
	now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	const tick, late = 10 * time.Millisecond, 200 * time.Millisecond
	m := newJumpMonitor(tick, late, now)
	defer m.close()

	jumps := make(chan time.Duration, 16)
	cancel := m.subscribe(func(l time.Duration) { jumps <- l })
	var other atomic.Int32
	m.subscribe(func(time.Duration) { other.Add(1) })

	select {
	case l := <-jumps:
		t.Fatalf("a jump of %s reported with the clock on time", l)
	case <-time.After(300 * time.Millisecond):
	}

	offset.Add(int64(5 * time.Second))
	select {
	case l := <-jumps:
		if l < 4*time.Second || l > 6*time.Second {
			t.Fatalf("jump reported %s late, want about 5s", l)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a 5s jump of the clock was not reported")
	}
	// Subscribers are called one after the other, in no set order: the
	// second may come just after the first.
	deadline := time.Now().Add(2 * time.Second)
	for other.Load() < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if other.Load() != 1 {
		t.Fatalf("the second subscriber was called %d times, want 1", other.Load())
	}

	cancel()
	offset.Add(int64(5 * time.Second))
	deadline = time.Now().Add(2 * time.Second)
	for other.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if other.Load() != 2 {
		t.Fatalf("the second jump reached the remaining subscriber %d times in all, want 2", other.Load())
	}
	select {
	case l := <-jumps:
		t.Fatalf("an unsubscribed callback was called (%s)", l)
	default:
	}
}

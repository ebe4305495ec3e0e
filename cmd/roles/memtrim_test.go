package roles

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"sync"
	"testing"
	"time"
)

// trimRun runs trimAfterBursts by rule r with the measure reading
// counts[0] at the start and counts[i] at tick i, and returns the ticks at
// which it freed.
func trimRun(t *testing.T, r trimRule, counts []uint64) []int {
	t.Helper()
	calls := 0 // read by the watcher alone, once per tick
	measure := func() uint64 {
		n := counts[min(calls, len(counts)-1)]
		calls++
		return n
	}
	var frees []int
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		trimAfterBursts(ctx, tick, measure, r, func() { frees = append(frees, calls-1) })
	}()
	for range len(counts) - 1 {
		tick <- time.Time{}
	}
	cancel()
	<-done
	return frees
}

// The trim comes once a burst of ended connections is over (the count
// held still for a tick), not during it, not for a handful, and not
// again until another burst.
func TestTrimAfterBursts(t *testing.T) {
	b := relayTrim.enough
	for _, c := range []struct {
		name   string
		counts []uint64
		want   []int
	}{
		{"nothing ended", []uint64{5, 5, 5, 5}, nil},
		{"ended before the start", []uint64{500, 500, 500}, nil},
		{"a handful", []uint64{5, 5 + b - 1, 5 + b - 1, 5 + b - 1}, nil},
		{"a burst, then quiet", []uint64{5, 5 + b, 5 + b, 5 + b, 5 + b}, []int{2}},
		{"a burst over several ticks", []uint64{0, 10, 30, b, b + 2, b + 2}, []int{5}},
		{"two bursts", []uint64{0, b, b, b, 3 * b, 3 * b, 3*b + 1, 3*b + 1}, []int{2, 5}},
		{"a steady churn", []uint64{0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b}, nil},
		{"a churn that stops", []uint64{0, b, 2 * b, 3 * b, 3 * b}, []int{4}},
	} {
		if got := trimRun(t, relayTrim, c.counts); !slices.Equal(got, c.want) {
			t.Errorf("%s: counts %v: freed at ticks %v, want %v", c.name, c.counts, got, c.want)
		}
	}
}

// By CPU time: the trim comes at the first tick of rest after a quarter
// of a CPU-second of work, whether the work came at once or slowly; an
// idle process's timers are rest, and a load that never rests never pays.
func TestTrimAfterWork(t *testing.T) {
	const ms = 1000 // the measure counts microseconds
	tick := uint64(trimTick / time.Microsecond)
	if workTrim.quiet != tick/100 || workTrim.enough != 250*ms {
		t.Fatalf("workTrim = %+v; the cases below assume 1 %% of a core and 250 ms", workTrim)
	}
	for _, c := range []struct {
		name   string
		counts []uint64 // CPU microseconds used so far, one per tick
		want   []int
	}{
		{"idle: timers and keepalives", []uint64{0, 1 * ms, 2 * ms, 4 * ms, 5 * ms, 6 * ms}, nil},
		{"a transfer, then rest", []uint64{0, 900 * ms, 1800 * ms, 1805 * ms, 1806 * ms}, []int{3}},
		{"rest that is almost busy", []uint64{0, 900 * ms, 900*ms + 20*ms, 900*ms + 39*ms, 900*ms + 58*ms}, []int{3}},
		{"work too small", []uint64{0, 100 * ms, 249 * ms, 249 * ms, 249 * ms}, nil},
		{"slow work adds up", []uint64{0, 19 * ms, 60 * ms, 110 * ms, 160 * ms, 210 * ms, 260 * ms, 261 * ms}, []int{7}},
		{"a load that never rests", []uint64{0, 300 * ms, 600 * ms, 900 * ms, 1200 * ms}, nil},
		{"two transfers", []uint64{0, 500 * ms, 500 * ms, 500 * ms, 1000 * ms, 1000 * ms, 1001 * ms}, []int{2, 5}},
	} {
		if got := trimRun(t, workTrim, c.counts); !slices.Equal(got, c.want) {
			t.Errorf("%s: counts %v: freed at ticks %v, want %v", c.name, c.counts, got, c.want)
		}
	}
}

// heapRetained is the heap memory the process holds from the system:
// its objects, and the free and unused space it has not given back.
func heapRetained(t *testing.T) uint64 {
	t.Helper()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"},
		{Name: "/memory/classes/heap/unused:bytes"}, {Name: "/memory/classes/heap/free:bytes"}}
	metrics.Read(s)
	var total uint64
	for _, x := range s {
		total += x.Value.Uint64()
	}
	return total
}

// freeAll gives back what a pool held, which one collection and release
// (debug.FreeOSMemory alone) would keep: the transfer buffers of an agent
// at rest are in pools (transport's received blocks and splice buffers).
func TestFreeAllReturnsPooledMemory(t *testing.T) {
	const size = 64 << 20
	// No collection while the pool fills: one would empty it early.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	var pool sync.Pool
	for range size >> 20 {
		pool.Put(make([]byte, 1<<20))
	}
	before := heapRetained(t)
	freeAll()
	after := heapRetained(t)
	runtime.KeepAlive(&pool)
	if before < after || before-after < size/2 {
		t.Fatalf("heap held from the system: %d MiB before, %d MiB after; want at least %d MiB given back",
			before>>20, after>>20, size>>21)
	}
}

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
	return trimRunGauges(t, []trimRule{r}, [][]uint64{counts})
}

// trimRunGauges is trimRun with one gauge per rule, gauge g reading
// counts[g]; all have as many counts.
func trimRunGauges(t *testing.T, rules []trimRule, counts [][]uint64) []int {
	t.Helper()
	ticks := len(counts[0]) - 1
	reads := make([]int, len(rules)) // read by the watcher alone, once per tick
	gauges := make([]trimGauge, len(rules))
	for g, r := range rules {
		gauges[g] = trimGauge{rule: r, measure: func() uint64 {
			n := counts[g][min(reads[g], ticks)]
			reads[g]++
			return n
		}}
	}
	var frees []int
	tick := make(chan time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		trimAfterBursts(ctx, tick, gauges, func() { frees = append(frees, reads[0]-1) })
	}()
	for range ticks {
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

// With the bytes allocated beside the CPU time, as TrimAfterWork reads
// them: rest's slow garbage is trimmed once it adds up, but not while the
// process works (either measure busy), and a trim for either starts both
// counts again.
func TestTrimAfterGarbage(t *testing.T) {
	const ms, kib = 1000, 1 << 10
	if garbageTrim.quiet != 64*kib || garbageTrim.enough != 256*kib {
		t.Fatalf("garbageTrim = %+v; the cases below assume 64 KiB and 256 KiB", garbageTrim)
	}
	rules := []trimRule{workTrim, garbageTrim}
	for _, c := range []struct {
		name      string
		cpu, heap []uint64 // CPU microseconds and bytes allocated so far, one per tick
		want      []int
	}{
		{"rest, garbage under the bar",
			[]uint64{0, 1 * ms, 2 * ms, 3 * ms, 4 * ms},
			[]uint64{0, 5 * kib, 10 * kib, 15 * kib, 20 * kib}, nil},
		{"rest, garbage adds up",
			[]uint64{0, 1 * ms, 2 * ms, 3 * ms, 4 * ms, 5 * ms, 6 * ms},
			[]uint64{0, 60 * kib, 120 * kib, 180 * kib, 240 * kib, 300 * kib, 360 * kib}, []int{5}},
		{"garbage made fast is work: trimmed once it stops",
			[]uint64{0, 1 * ms, 2 * ms, 3 * ms, 4 * ms},
			[]uint64{0, 1024 * kib, 2048 * kib, 2050 * kib, 2052 * kib}, []int{3}},
		{"garbage made while the CPU works waits for rest",
			[]uint64{0, 100 * ms, 200 * ms, 300 * ms, 301 * ms},
			[]uint64{0, 100 * kib, 200 * kib, 300 * kib, 310 * kib}, []int{4}},
		{"a trim for work starts the garbage count again",
			[]uint64{0, 300 * ms, 300 * ms, 301 * ms, 302 * ms, 303 * ms, 304 * ms, 305 * ms},
			[]uint64{0, 200 * kib, 210 * kib, 270 * kib, 330 * kib, 390 * kib, 450 * kib, 510 * kib}, []int{2, 7}},
	} {
		if got := trimRunGauges(t, rules, [][]uint64{c.cpu, c.heap}); !slices.Equal(got, c.want) {
			t.Errorf("%s: CPU %v, heap %v: freed at ticks %v, want %v", c.name, c.cpu, c.heap, got, c.want)
		}
	}
}

// heapAllocated reads what the runtime counts. The runtime counts a
// span's objects when the span is handed out, so the last ones may not be
// counted yet: half is enough.
func TestHeapAllocated(t *testing.T) {
	read := heapAllocated()
	before := read()
	sink := make([][]byte, 0, 64)
	for range 64 {
		sink = append(sink, make([]byte, 16<<10))
	}
	runtime.KeepAlive(sink)
	if after := read(); after < before+1<<19 {
		t.Fatalf("heap allocated: %d bytes before, %d after allocating 1 MiB", before, after)
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

package roles

import (
	"context"
	"slices"
	"testing"
	"time"
)

// trimRun runs trimAfterBursts with ended reading counts[0] at the start
// and counts[i] at tick i, and returns the ticks at which it freed.
func trimRun(t *testing.T, counts []uint64) []int {
	t.Helper()
	calls := 0 // read by the watcher alone, once per tick
	ended := func() uint64 {
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
		trimAfterBursts(ctx, tick, ended, func() { frees = append(frees, calls-1) })
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
	const b = trimAfterEnded
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
		if got := trimRun(t, c.counts); !slices.Equal(got, c.want) {
			t.Errorf("%s: counts %v: freed at ticks %v, want %v", c.name, c.counts, got, c.want)
		}
	}
}

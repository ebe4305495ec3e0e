package limit

import (
	"fmt"
	"testing"
	"time"
)

func TestCounter(t *testing.T) {
	c := NewCounter[string](2, 3)
	r1, over := c.Acquire("a")
	r2, _ := c.Acquire("a")
	if r1 == nil || r2 == nil || over != "" {
		t.Fatal("a's first two refused")
	}
	if _, over := c.Acquire("a"); over != OverKey {
		t.Fatalf("a's third: %q, want %q", over, OverKey)
	}
	r3, _ := c.Acquire("b")
	if _, over := c.Acquire("c"); over != OverTotal {
		t.Fatalf("fourth in all: %q, want %q", over, OverTotal)
	}
	r1()
	r1() // once only
	if k, total := c.Held("a"); k != 1 || total != 2 {
		t.Fatalf("held a %d, total %d; want 1, 2", k, total)
	}
	r2()
	r3()
	if len(c.n) != 0 || c.sum != 0 {
		t.Fatalf("keys %d, sum %d after all released", len(c.n), c.sum)
	}
}

func TestReporter(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewReporter(10*time.Second, 2, 2)
	for i := range 2 {
		if log, _ := r.Note("a", now); !log {
			t.Fatalf("refusal %d of a not logged, within the burst", i+1)
		}
	}
	for range 5 {
		if log, _ := r.Note("a", now.Add(time.Second)); log {
			t.Fatal("a logged past its burst within the interval")
		}
	}
	if log, n := r.Note("a", now.Add(10*time.Second)); !log || n != 5 {
		t.Fatalf("a after the interval: %v, %d suppressed; want true, 5", log, n)
	}
	// Past max keys, the rest share one entry: one burst per interval.
	r.Note("b", now)
	logged := 0
	for i := range 1000 {
		if log, _ := r.Note(fmt.Sprint("k", i), now.Add(time.Second)); log {
			logged++
		}
	}
	if logged != 2 || len(r.m) > 2 {
		t.Fatalf("1000 new keys: %d logged, %d tracked; want 2, at most 2", logged, len(r.m))
	}
}

func TestRate(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRate[string](1, 2, 2)
	if !r.Allow("a", now) || !r.Allow("a", now) || r.Allow("a", now) {
		t.Fatal("a: want a burst of 2, then a refusal")
	}
	if !r.Allow("a", now.Add(time.Second)) {
		t.Fatal("a: no token after a second")
	}
	// Past max keys, the rest share one bucket.
	r.Allow("b", now)
	allowed := 0
	for i := range 100 {
		if r.Allow(fmt.Sprint("k", i), now) {
			allowed++
		}
	}
	if allowed != 2 || len(r.m) > 2 {
		t.Fatalf("100 new keys at once: %d allowed, %d tracked; want 2 (one shared burst), at most 2", allowed, len(r.m))
	}
}

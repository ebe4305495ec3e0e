package limit

import "sync"

// Counter counts what each key holds open, with a cap per key and a cap
// over all keys. A key holding nothing takes no memory, so at most Total
// keys are ever tracked.
type Counter[K comparable] struct {
	perKey, total int

	mu  sync.Mutex
	n   map[K]int
	sum int
}

// Refusals of Acquire.
const (
	OverKey   = "key"   // the key holds its cap
	OverTotal = "total" // all keys together hold the total cap
)

// NewCounter returns a Counter allowing perKey per key and total in all.
func NewCounter[K comparable](perKey, total int) *Counter[K] {
	return &Counter[K]{perKey: perKey, total: total, n: make(map[K]int)}
}

// Acquire takes one for k. It returns release, which gives it back (once,
// whatever the number of calls), or which cap refused it.
func (c *Counter[K]) Acquire(k K) (release func(), over string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.n[k] >= c.perKey:
		return nil, OverKey
	case c.sum >= c.total:
		return nil, OverTotal
	}
	c.n[k]++
	c.sum++
	return sync.OnceFunc(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.n[k]--; c.n[k] <= 0 {
			delete(c.n, k)
		}
		c.sum--
	}), ""
}

// Held returns what k holds and what all keys hold.
func (c *Counter[K]) Held(k K) (key, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[k], c.sum
}

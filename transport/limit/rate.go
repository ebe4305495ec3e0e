package limit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate caps how often each key may do something: a token bucket per key,
// perSecond on average with bursts of burst. It tracks at most max keys;
// past that, a key not tracked shares one bucket with the others, so a
// flood from many keys is capped as one key.
type Rate[K comparable] struct {
	limit rate.Limit
	burst int
	max   int

	mu     sync.Mutex
	m      map[K]*rate.Limiter
	others *rate.Limiter
}

// NewRate returns a Rate of perSecond per key with bursts of burst,
// tracking at most max keys.
func NewRate[K comparable](perSecond float64, burst, max int) *Rate[K] {
	return &Rate[K]{limit: rate.Limit(perSecond), burst: burst, max: max, m: make(map[K]*rate.Limiter),
		others: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// Allow reports whether k may act now, and takes a token if so.
func (r *Rate[K]) Allow(k K, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.m[k]
	if l == nil {
		if len(r.m) >= r.max {
			r.forget(now)
		}
		if len(r.m) < r.max {
			l = rate.NewLimiter(r.limit, r.burst)
			r.m[k] = l
		} else {
			l = r.others
		}
	}
	return l.AllowN(now, 1)
}

// forget drops, among a few keys (forgetScan), those whose bucket is full
// again: forgetting them forgives nothing. A full table is never walked
// whole under the lock.
func (r *Rate[K]) forget(now time.Time) {
	seen := 0
	for k, l := range r.m {
		if l.TokensAt(now) >= float64(r.burst) {
			delete(r.m, k)
		}
		if seen++; seen == forgetScan {
			return
		}
	}
}

// forgetScan is how many tracked keys a new key, finding the table full,
// looks at to make room: Go starts each map walk at a random place, so
// over many calls every key is looked at.
const forgetScan = 8

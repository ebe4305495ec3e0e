package limit

import (
	"sync"
	"time"
)

// Reporter decides which refusals to log: at most burst per key per
// interval, the first of the next interval saying how many were not
// logged. It tracks at most max keys; past that, keys not tracked share one
// entry, so a flood from many keys yields at most (max+1)·burst lines per
// interval.
type Reporter struct {
	every time.Duration
	burst int
	max   int

	mu     sync.Mutex
	m      map[string]*reported
	others reported
}

type reported struct {
	window     time.Time // when the current interval began
	logged     int       // refusals logged in it
	suppressed int       // refusals not logged since the last that was
}

// NewReporter returns a Reporter logging at most burst refusals per key
// per every, tracking at most keys keys.
func NewReporter(every time.Duration, burst, keys int) *Reporter {
	return &Reporter{every: every, burst: max(burst, 1), max: keys, m: make(map[string]*reported)}
}

// Note records a refusal for key at now. It reports whether to log it,
// and how many refusals of key were not logged since the last that was.
func (r *Reporter) Note(key string, now time.Time) (log bool, suppressed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[key]
	if e == nil {
		if len(r.m) >= r.max {
			r.forget(now)
		}
		if len(r.m) < r.max {
			e = &reported{}
			r.m[key] = e
		} else {
			e = &r.others
		}
	}
	if e.window.IsZero() || now.Sub(e.window) >= r.every {
		e.window, e.logged = now, 0
	}
	if e.logged >= r.burst {
		e.suppressed++
		return false, 0
	}
	e.logged++
	suppressed, e.suppressed = e.suppressed, 0
	return true, suppressed
}

// forget drops, among a few keys (forgetScan), those whose interval is
// over and that have nothing suppressed: forgetting them loses nothing
// worth a line. A full table is never walked whole under the lock.
func (r *Reporter) forget(now time.Time) {
	seen := 0
	for k, e := range r.m {
		if now.Sub(e.window) >= r.every && e.suppressed == 0 {
			delete(r.m, k)
		}
		if seen++; seen == forgetScan {
			return
		}
	}
}

package limit

import (
	"sync"
	"time"
)

// Reporter decides which refusals to log: the first of each key, then at
// most one per key per interval, each saying how many were not logged
// since. It tracks at most max keys; past that, keys not tracked share one
// entry, so a flood from many keys still yields one line per interval.
type Reporter struct {
	every time.Duration
	max   int

	mu     sync.Mutex
	m      map[string]*reported
	others reported
}

type reported struct {
	at         time.Time // the last refusal logged
	suppressed int       // refusals since, not logged
}

// NewReporter returns a Reporter logging once per key per every, tracking
// at most max keys.
func NewReporter(every time.Duration, max int) *Reporter {
	return &Reporter{every: every, max: max, m: make(map[string]*reported)}
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
	if !e.at.IsZero() && now.Sub(e.at) < r.every {
		e.suppressed++
		return false, 0
	}
	suppressed, e.at, e.suppressed = e.suppressed, now, 0
	return true, suppressed
}

// forget drops the keys whose last log is an interval old and that have
// nothing suppressed: forgetting them loses nothing worth a line.
func (r *Reporter) forget(now time.Time) {
	for k, e := range r.m {
		if now.Sub(e.at) >= r.every && e.suppressed == 0 {
			delete(r.m, k)
		}
	}
}

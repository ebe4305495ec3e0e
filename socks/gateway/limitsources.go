package gateway

import (
	"net/netip"
	"time"

	"golang.org/x/time/rate"
)

// The Limiter's per-source state, bounded whatever addresses strangers
// bring, and forgotten without ever walking the whole table: sources that
// hold nothing are kept on a list, most recently used first, so the one to
// forget is always at its end.

const (
	// trackedSources is the least number of sources whose state is kept;
	// a Limiter keeps at least 2*MaxTotal, as many as can hold a slot.
	trackedSources = 1 << 16
	// idleEvict is how long a source holding nothing is kept after its
	// last use (and only once forgetting it forgives nothing).
	idleEvict = 5 * time.Minute
	// expirePerCall bounds the idle sources one Acquire looks at to forget
	// them, and so the ones it forgets: more than the one it may add, so
	// the idle ones drain while calls come, and never a pause.
	expirePerCall = 4
	// reuseLook bounds the idle sources a new source looks at, least
	// recently used first, for one to take the entry of when the table is
	// full.
	reuseLook = 4
)

type source struct {
	bucket   *rate.Limiter
	held     [numKinds]int
	lastUsed time.Time
	reported time.Time // last refusal that was logged
	dropped  int       // refusals since then

	key        netip.Prefix
	prev, next *source // on the idle list, while holding nothing
	idle       bool
}

// sourceTable holds at most max sources, and one more that the sources
// past max share. Its methods are called with the Limiter's mu held.
type sourceTable struct {
	max       int
	newBucket func() *rate.Limiter
	m         map[netip.Prefix]*source
	shared    *source
	// idle is the sentinel of the list of sources holding nothing: most
	// recently used at idle.next, least at idle.prev.
	idle source
}

func (t *sourceTable) init(max int, newBucket func() *rate.Limiter) {
	t.max, t.newBucket = max, newBucket
	t.m = make(map[netip.Prefix]*source)
	t.shared = &source{bucket: newBucket()}
	t.idle.next, t.idle.prev = &t.idle, &t.idle
}

func (t *sourceTable) len() int { return len(t.m) }

// get returns the state of the source k, creating it. A full table first
// forgets its least recently used idle source if that forgives nothing;
// if it cannot, k shares the budget of every source past the cap.
func (t *sourceTable) get(k netip.Prefix, now time.Time) *source {
	if s := t.m[k]; s != nil {
		return s
	}
	if len(t.m) >= t.max {
		old := t.idle.prev
		for range reuseLook {
			if old == &t.idle || t.forgettable(old, now) {
				break
			}
			old = old.prev
		}
		if old == &t.idle || !t.forgettable(old, now) {
			return t.shared
		}
		t.forget(old)
		// Its entry serves k: its bucket is full, as a new one would be.
		*old = source{bucket: old.bucket, key: k}
		t.m[k] = old
		return old
	}
	s := &source{key: k, bucket: t.newBucket()}
	t.m[k] = s
	return s
}

// touch records a use of s at now, and keeps the idle list in order: s
// at its front if it holds nothing, off it if it holds anything.
func (t *sourceTable) touch(s *source, now time.Time) {
	s.lastUsed = now
	if s == t.shared {
		return
	}
	if s.idle {
		s.prev.next, s.next.prev = s.next, s.prev
		s.idle = false
	}
	if s.held == [numKinds]int{} {
		s.prev, s.next = &t.idle, t.idle.next
		t.idle.next.prev = s
		t.idle.next = s
		s.idle = true
	}
}

// expire looks at up to n idle sources, oldest first, and forgets those
// idle for idleEvict whose forgetting forgives them nothing; it stops at
// the first not idle that long (the rest are younger).
func (t *sourceTable) expire(now time.Time, n int) {
	s := t.idle.prev
	for range n {
		if s == &t.idle || now.Sub(s.lastUsed) < idleEvict {
			return
		}
		prev := s.prev
		if t.forgettable(s, now) {
			t.forget(s)
		}
		s = prev
	}
}

// forgettable reports whether forgetting s, which holds nothing, forgives
// it nothing: its token bucket is full again, and its next refusal would
// be logged anyway (the count of refusals not logged since the last that
// was is then lost).
func (t *sourceTable) forgettable(s *source, now time.Time) bool {
	return s.bucket.TokensAt(now) >= float64(s.bucket.Burst()) &&
		(s.reported.IsZero() || now.Sub(s.reported) >= reportEvery)
}

func (t *sourceTable) forget(s *source) {
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next, s.idle = nil, nil, false
	delete(t.m, s.key)
}

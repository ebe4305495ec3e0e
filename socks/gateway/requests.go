package gateway

import (
	"strconv"
	"sync/atomic"
)

// RequestCounts counts the HTTP front's requests by the status answered,
// for metrics read at scrape time: one atomic per status, indexed, so a
// request costs one add and no lookup, and the statuses that can appear
// are bounded (a device's server chooses its own, within 100–599).
type RequestCounts struct {
	byStatus [600]atomic.Uint64 // [0]: no status was sent (aborted)
}

func (c *RequestCounts) count(status int) {
	if status < 100 || status >= len(c.byStatus) {
		status = 0
	}
	c.byStatus[status].Add(1)
}

// Each calls f with each status answered so far (its label: the number,
// or "none" for requests aborted before a status) and its count.
func (c *RequestCounts) Each(f func(code string, n uint64)) {
	for s := range c.byStatus {
		n := c.byStatus[s].Load()
		if n == 0 {
			continue
		}
		code := "none"
		if s != 0 {
			code = strconv.Itoa(s)
		}
		f(code, n)
	}
}

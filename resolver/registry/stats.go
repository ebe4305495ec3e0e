package registry

import "sync/atomic"

// Stats counts what a Server does, for metrics read at scrape time: plain
// atomics, so that counting costs the request path one add.
type Stats struct {
	// Devices is the number of devices (nodes that publish) registered
	// here now.
	Devices atomic.Int64
	// Conns is the number of outer connections open now: nodes that hold
	// their registration with one (all but leased devices), and nodes
	// looking something up.
	Conns atomic.Int64
	// Closed counts the outer connections that have ended since the
	// server started.
	Closed atomic.Uint64
	// Lookups counts lookups by how they were answered.
	Lookups [numLookupResults]atomic.Uint64
	// Errors counts the presence backend's failures (Redis unreachable or
	// failing) on registrations, lookups and removals.
	Errors atomic.Uint64
}

// LookupResult is how a lookup was answered.
type LookupResult uint8

// Lookup results.
const (
	LookupFound       LookupResult = iota // the device is registered here
	LookupRedirected                      // the device is registered at another node
	LookupNotFound                        // offline or unknown
	LookupBusy                            // the asking key is over its lookup rate
	LookupUnavailable                     // the shared presence is unreachable
	LookupBadRequest                      // the request did not parse
	LookupError                           // the presence backend failed otherwise
	numLookupResults
)

var lookupNames = [numLookupResults]string{"found", "redirected", "not_found", "busy", "unavailable", "bad_request", "error"}

// String names the result for metric labels.
func (r LookupResult) String() string {
	if r < numLookupResults {
		return lookupNames[r]
	}
	return "error"
}

// LookupResults lists every result, in order.
func LookupResults() []LookupResult {
	out := make([]LookupResult, numLookupResults)
	for i := range out {
		out[i] = LookupResult(i)
	}
	return out
}

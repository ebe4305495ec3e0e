package transport

import "errors"

// Outcomes of reaching a peer; callers branch on them with errors.Is.
var (
	// ErrPeerMismatch: the peer proved a key other than the one expected.
	ErrPeerMismatch = errors.New("peer key does not match the expected ID")
	// ErrNoDirectPath: in PathDirect mode, no direct path answered in time.
	ErrNoDirectPath = errors.New("no direct path")
)

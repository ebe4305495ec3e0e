package resolver

import (
	"time"

	"github.com/tunnel-dev/tunnel/transport"
)

// Every timing of the package, in one place.
const (
	// lookupWait bounds how long a lookup waits for a relay connection
	// that is down, so that a dead relay gives a fast, clear error.
	lookupWait = 3 * time.Second
	// pingTimeout is how long a relay may take to answer a ping;
	// jumpPingTimeout, the ping right after a time jump, when the session
	// is likely gone and the node waits for nothing else.
	pingTimeout     = 5 * time.Second
	jumpPingTimeout = time.Second
	// keepRetry is how soon an unanswered keep of a lease is sent again
	// (lease.go); releaseWait bounds the release of a lease when the node
	// stops.
	keepRetry   = time.Second
	releaseWait = 300 * time.Millisecond
	// dialRelayTimeout bounds dialing a rendezvous node.
	dialRelayTimeout = transport.HandshakeTimeout + time.Second

	// Reconnects: exponential backoff with jitter between these bounds; a
	// session that lasted stableSession resets it.
	backoffFirst  = 200 * time.Millisecond
	backoffMax    = 5 * time.Second
	backoffJitter = 0.5
	stableSession = 30 * time.Second

	// goneGrace is how long a device reported gone by the relay may take
	// to show up again at the same endpoint (a relay restart) before its
	// connection is dropped; goneRecheck is the pace of the lookups
	// meanwhile.
	goneGrace   = 5 * time.Second
	goneRecheck = 500 * time.Millisecond
)

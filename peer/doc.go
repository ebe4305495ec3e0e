// Package peer is the device side: the agent that accepts end-to-end
// connections from clients and joins each stream to the local TCP service
// published on the port the client asked for. Keys and IDs live in the
// leaf package peer/identity.
//
// Invariants: the agent answers every stream with a status before any
// payload; a port that is not published is never dialed; every goroutine it
// starts ends when Serve's context ends.
package peer

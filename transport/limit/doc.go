// Package limit bounds what a stranger can make a node spend before it is
// authorized, and what refusing the stranger costs: Counter caps what each
// key (a source address, a client key) holds open and what all hold
// together; Rate caps how often each key may do something; Reporter lets
// a refusal be logged at most once per key per interval, with the number
// it did not log.
//
// Invariants: every structure is bounded whatever keys callers pass —
// Counter by its total cap, Rate and Reporter by the number of keys they
// are given, past which keys share one slot — and safe for concurrent use.
package limit

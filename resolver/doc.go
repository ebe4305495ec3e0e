// Package resolver turns .tunnel names into end-to-end connections: it
// parses names, and it owns a node's rendezvous sessions and routing —
// the registration at its home rendezvous node (on an outer connection
// with a heartbeat, or for a device on a lease it keeps without one;
// reconnect, the choice among several), the extra sessions a redirect to a
// device's home node needs, and the node's routing table of relays — so
// that callers dial a device by ID (Client.DialPeer) and never manage
// relays. The server side of the registry protocol and the presence
// backends are package registry; the messages both halves exchange are
// defined once, in resolver/internal/wire.
//
// Invariants: one Client owns one node's sessions and its routing table
// (transport.Node.SetRoutes) and nothing else writes them; a session to
// another node lives exactly as long as a connection routed through it
// (one reference count, in that session); every goroutine the Client
// starts ends when Run returns, and what a connection DialPeer made holds
// is released when that connection closes.
package resolver

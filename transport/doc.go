// Package transport owns how bytes move between nodes: identity-bound TLS,
// the node's UDP socket shared by its QUIC connections, the packet relay a
// rendezvous node runs, the stream header a client sends to a device, and the
// splice that joins a stream to a TCP connection.
//
// Two QUIC layers share each node's one UDP socket:
//
//   - outer: one connection from every node to its rendezvous node (relay),
//     used for registration and lookups (package resolver speaks over it);
//   - inner: end-to-end connections between a client and a device,
//     mutually authenticated with their node keys. Their packets travel as
//     opaque payload in relay frames (see relay.go), so a relay can neither
//     read nor forge them.
//
// Relay frames start with a byte whose two top bits are zero, which no QUIC
// packet does, so one socket tells them apart from outer QUIC packets by the
// first byte alone.
package transport

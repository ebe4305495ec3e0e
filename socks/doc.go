// Package socks is the local SOCKS5 front door of the tunnel daemon: a
// CONNECT-only server (RFC 1928, no authentication) that hands every request
// to a DialFunc and splices the client to whatever it returns, an HTTP
// front on the same port (PAC file and CONNECT, http.go), and the client
// side (client.go) that `tunnel connect --socks`, the bench and the tests
// speak. The server knows nothing about devices: the dialer
// (socks/dialer) does, and its errors become reply codes through
// ReplyCode, from the one classification dialer.Classify makes.
//
// Invariants the server keeps, whatever a client sends:
//
//   - It never reads past the end of a handshake message, so bytes a client
//     sends right after its request reach the upstream intact.
//   - A client gets HandshakeTimeout for greeting and request together, and
//     that deadline is cleared before splicing: an idle but established
//     session is never cut by it.
//   - Malformed input closes the connection; it never panics or hangs.
//   - Every goroutine has an owner that stops it: Serve returns only after
//     each connection it accepted has finished, and a cancelled context
//     aborts all of them.
//   - End of data is passed on as a half-close in each direction separately
//     (see transport.Splice), never as a full close.
package socks

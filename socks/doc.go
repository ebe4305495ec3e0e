// Package socks is the local SOCKS5 front door of the tunnel daemon: a
// CONNECT-only server (RFC 1928; SOCKS4 and 4a answered too, socks4.go)
// that hands every request to a DialFunc and splices the client to
// whatever it returns, an HTTP front on the same port (PAC file, CONNECT
// and plain forward-proxy requests, http.go and httpproxy.go), and the client side (client.go)
// that `tunnel connect --socks`, the bench and the tests speak. The server
// knows nothing about devices: the dialer (socks/dialer) does, and its
// errors become reply codes through ReplyCode, from the one classification
// dialer.Classify makes.
//
// Whoever gets through the door dials with the daemon's key and fleet
// credentials, so the door is guarded (socksd wires it, cmd/roles):
//
//   - With a password file (passwd.go), every client proves a username and
//     password: SOCKS method 0x02 (RFC 1929), or Proxy-Authorization
//     Basic on a CONNECT (else 407). Authenticator (auth.go) bounds what
//     checking them costs: cached successes, a rate of checks per source,
//     a cap on checks at once.
//   - Without one (loopback only), OwnerOnly (localuser.go) admits the
//     clients whose socket belongs to the daemon's user or root, as the
//     kernel says (peercred_linux.go); others get 0x02 or 403.
//   - PreAuth (preauth.go) caps per source and in all the connections not
//     yet authorized; the HTTP front reads at most 64 KiB of headers.
//
// Refusals are logged at most once per source (or local user) per 10 s,
// with the number not logged.
//
// Invariants the server keeps, whatever a client sends:
//
//   - It never reads past the end of a handshake message, so bytes a client
//     sends right after its request reach the upstream intact.
//   - A client gets HandshakeTimeout for greeting, password and request
//     together, and that deadline is cleared before splicing: an idle but
//     established session is never cut by it.
//   - Malformed input closes the connection; it never panics or hangs.
//   - Every goroutine has an owner that stops it: Serve returns only after
//     each connection it accepted has finished, and a cancelled context
//     aborts all of them.
//   - End of data is passed on as a half-close in each direction separately
//     (see transport.Splice), never as a full close.
package socks

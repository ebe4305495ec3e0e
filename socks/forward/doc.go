// Package forward is the front door for local forwards (`tunnel bind`,
// socksd's --bind): a TCP port on this machine whose every accepted
// connection becomes one stream to a fixed HOST:PORT on a device, as
// `ssh -L` does, for tools that cannot speak SOCKS (database clients, VNC
// viewers, IDEs, apps on the same LAN).
//
// A SPEC is `[LISTENHOST:]LOCALPORT:HOST:PORT` in ssh -L order (spec.go).
// Whoever reaches the port dials with this node's key and fleet
// credentials and no password, so a LISTENHOST beyond loopback is refused
// unless the caller allows it (ErrRemote).
//
// Invariants a Forwarder keeps, whatever clients do:
//
//   - The port is bound by Listen, before anything is served, so a port in
//     use is an error at start that names the address.
//   - At most MaxConns connections are served at once; one over is closed
//     at once, without dialing.
//   - A failed dial (device offline, port not published, access denied)
//     closes the accepted connection at once; failures are logged at most
//     once per interval per bind, with the number not logged, and the
//     listener goes on accepting.
//   - End of data passes as a half-close in each direction (transport.Splice).
//   - Serve returns only after every connection it accepted is gone, and
//     a cancelled context aborts them all.
package forward

// Package roles is the composition layer: it starts each role a tunnel
// process plays — a rendezvous node (StartRelay), a client with its SOCKS
// front door (StartClient, `tunnel socksd`), a device agent (StartDevice,
// `tunnel publish`), a public gateway (StartGateway) and the plain node
// under the client-side roles (StartNode, `tunnel connect`) — from a
// config struct, wiring the packages below and nothing else: no protocol,
// no policy. It also serves and reads the status control socket (Status).
//
// cmd/tunnel turns flags into these configs; test/bench, test/load and the
// tests' fixtures start the same roles the same way.
//
// Invariants: a Start function either returns a running role or an error
// with nothing left running; a role runs until the context given to Start
// ends or it fails, and Wait returns only once every goroutine and socket
// it started is gone.
package roles

package transport

import "errors"

// Outcomes of opening a stream to a device, as the device reports them.
// Callers branch on them with errors.Is (socks maps each to a reply code).
var (
	// ErrPortNotPublished: the device publishes nothing on that port.
	ErrPortNotPublished = errors.New("port not published")
	// ErrDenied: the port exists but this client may not use it.
	ErrDenied = errors.New("access denied")
	// ErrRefused: the device's local service refused the connection.
	ErrRefused = errors.New("local service refused the connection")
	// ErrTimeout: the device's local service did not answer in time.
	ErrTimeout = errors.New("local service timed out")
	// ErrBadRequest: the device could not parse the stream header.
	ErrBadRequest = errors.New("device rejected the stream header")
	// ErrPeerMismatch: the peer proved a key other than the one expected.
	ErrPeerMismatch = errors.New("peer key does not match the expected ID")
)

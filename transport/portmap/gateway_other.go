//go:build !linux

package portmap

import (
	"errors"
	"net/netip"
)

// ErrNoGateway: the host has no IPv4 default route through a gateway.
var ErrNoGateway = errors.New("no IPv4 default gateway")

// DefaultGateway returns the gateway of the host's IPv4 default route.
// Only Linux is read so far: elsewhere there is never one, and no mapping
// is asked for.
func DefaultGateway() (netip.Addr, error) { return netip.Addr{}, ErrNoGateway }

//go:build !linux

package socks

import (
	"errors"
	"net/netip"
)

// Finding the user of a loopback client's socket is written for Linux
// only: elsewhere the local-user check is not made, as socksd's
// --allow-local-users help says.
const uidLookupSupported = false

func socketUID(local, remote netip.AddrPort) (uint32, error) {
	return 0, errors.ErrUnsupported
}

package resolver

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Suffix is the pseudo top-level domain of device names.
const Suffix = ".tunnel"

// Outcomes of resolving a device; callers branch on them with errors.Is.
var (
	// ErrMalformedName: a .tunnel name whose device label is not an ID.
	ErrMalformedName = errors.New("malformed .tunnel name")
	// ErrOffline: the registry knows no online device with that ID.
	ErrOffline = errors.New("device unknown or offline")
	// ErrRegistryUnavailable: no rendezvous node could be asked.
	ErrRegistryUnavailable = errors.New("rendezvous node unreachable")
)

// ParseName reports whether host is a .tunnel name and, if so, which device
// it names. Matching is case-insensitive and a trailing dot is allowed.
// Labels left of the ID ("app.<id>.tunnel") are allowed and ignored here:
// the device's own service sees the full name. IP literals are never
// .tunnel names, even when they arrive as text.
func ParseName(host string) (id identity.ID, isTunnel bool, err error) {
	h := strings.TrimSuffix(host, ".")
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return id, false, nil
	}
	if len(h) < len(Suffix) || !strings.EqualFold(h[len(h)-len(Suffix):], Suffix) {
		return id, false, nil
	}
	id, err = identity.ParseID(deviceLabel(h))
	if err != nil {
		return id, true, fmt.Errorf("%w: %q: %w", ErrMalformedName, host, err)
	}
	return id, true, nil
}

// DeviceLabel returns the label of a .tunnel name that names the device
// (the one left of the suffix), lowercased, or "" if host is not a .tunnel
// name. It is where a pet name stands in for an ID.
func DeviceLabel(host string) string {
	h := strings.TrimSuffix(host, ".")
	if _, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
		return ""
	}
	if len(h) < len(Suffix) || !strings.EqualFold(h[len(h)-len(Suffix):], Suffix) {
		return ""
	}
	return strings.ToLower(deviceLabel(h))
}

// deviceLabel is the label left of the suffix of h, a .tunnel name with no
// trailing dot.
func deviceLabel(h string) string {
	rest := h[:len(h)-len(Suffix)]
	if i := strings.LastIndexByte(rest, '.'); i >= 0 {
		return rest[i+1:]
	}
	return rest
}

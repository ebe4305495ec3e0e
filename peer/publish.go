package peer

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Publish is what a device is asked to publish, as the user wrote it
// (`tunnel publish -public SPEC -private SPEC,ID… -protected SPEC --fleet
// ID -proxy-protocol PORT`); Ports turns it into what an Agent serves.
type Publish struct {
	Public    []string // SPEC
	Private   []string // SPEC,ID[,ID…]
	Protected []string // SPEC, for members of Fleet
	// ProtectedFleets, when set, holds a fleet ID for each Protected
	// spec (a config file's per-port fleet); "" takes Fleet.
	ProtectedFleets []string
	// Fleet is the fleet ID whose members may use Protected ports.
	Fleet string
	// ProxyProtocol lists published ports whose service gets a PROXY v2
	// header naming the client.
	ProxyProtocol []string
}

// Ports checks everything before anything is published: each spec, no
// port published twice, a fleet for protected ports, PROXY headers only
// for published ports. Every error wraps ErrBadSpec.
func (p Publish) Ports() ([]Port, identity.ID, error) {
	var fleetID identity.ID
	var ports []Port
	seen := map[uint16]string{}
	add := func(flag, arg string, port Port) error {
		desc := "-" + flag + " " + arg
		if prev, dup := seen[port.Remote]; dup {
			return badPublish(fmt.Errorf("port %d published twice (%s and %s)", port.Remote, prev, desc))
		}
		seen[port.Remote] = desc
		ports = append(ports, port)
		return nil
	}
	for _, arg := range p.Public {
		port, err := ParsePortSpec(arg)
		if err != nil {
			return nil, fleetID, err
		}
		if err := add("public", arg, port); err != nil {
			return nil, fleetID, err
		}
	}
	for _, arg := range p.Private {
		port, err := ParsePrivate(arg)
		if err != nil {
			return nil, fleetID, err
		}
		if err := add("private", arg, port); err != nil {
			return nil, fleetID, err
		}
	}
	if p.Fleet != "" {
		id, err := identity.ParseID(p.Fleet)
		if err != nil {
			return nil, fleetID, badPublish(fmt.Errorf("--fleet: %w", err))
		}
		fleetID = id
	}
	if len(p.ProtectedFleets) > len(p.Protected) {
		return nil, fleetID, badPublish(errors.New("more fleets than protected ports"))
	}
	for i, arg := range p.Protected {
		port, err := ParsePortSpec(arg)
		if err != nil {
			return nil, fleetID, err
		}
		port.Access = Protected
		if i < len(p.ProtectedFleets) && p.ProtectedFleets[i] != "" {
			if port.Fleet, err = identity.ParseID(p.ProtectedFleets[i]); err != nil {
				return nil, fleetID, badPublish(fmt.Errorf("-protected %s: fleet: %w", arg, err))
			}
		} else if p.Fleet == "" {
			return nil, fleetID, badPublish(errors.New("-protected ports need --fleet FLEET_ID (the fleet admin's 'tunnel fleet id')"))
		}
		if err := add("protected", arg, port); err != nil {
			return nil, fleetID, err
		}
	}
	if len(ports) == 0 {
		return nil, fleetID, badPublish(errors.New("nothing to publish: give at least one -public, -private or -protected SPEC (e.g. -public 22)"))
	}
	for _, arg := range p.ProxyProtocol {
		n, err := strconv.ParseUint(arg, 10, 16)
		if err != nil || n == 0 {
			return nil, fleetID, badPublish(fmt.Errorf("-proxy-protocol %q: want a published port number", arg))
		}
		i := slices.IndexFunc(ports, func(port Port) bool { return port.Remote == uint16(n) })
		if i < 0 {
			return nil, fleetID, badPublish(fmt.Errorf("-proxy-protocol %d: port %d is not published", n, n))
		}
		ports[i].ProxyProtocol = true
	}
	return ports, fleetID, nil
}

// publishError is an error of Ports: its message is the error's own, and
// it is an ErrBadSpec.
type publishError struct{ err error }

func badPublish(err error) error { return publishError{err} }

func (e publishError) Error() string   { return e.err.Error() }
func (e publishError) Unwrap() []error { return []error{ErrBadSpec, e.err} }

package peer

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// Access is who may use a published port. The agent decides on the
// client key of the end-to-end connection, which only the client holds, so
// no relay, registry or gateway can let a stranger in or pose as a client.
type Access uint8

// Access modes, as in the Diode client.
const (
	// Public ports accept any client, public gateways included.
	Public Access = iota
	// Private ports accept the client IDs listed on the port.
	Private
	// Protected ports accept members of the agent's fleet: clients that
	// present a credential the fleet key signed for their own key.
	Protected
)

func (a Access) String() string {
	switch a {
	case Public:
		return "public"
	case Private:
		return "private"
	case Protected:
		return "protected"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// ParsePrivate parses the argument of -private: `SPEC,ID[,ID…]`.
func ParsePrivate(arg string) (Port, error) {
	parts := strings.Split(arg, ",")
	if len(parts) < 2 {
		return Port{}, fmt.Errorf("%w %q: -private needs SPEC,ID[,ID…] (e.g. 22,<client-id>)", ErrBadSpec, arg)
	}
	p, err := ParsePortSpec(parts[0])
	if err != nil {
		return Port{}, err
	}
	p.Access = Private
	for _, s := range parts[1:] {
		id, err := identity.ParseID(strings.TrimSpace(s))
		if err != nil {
			return Port{}, fmt.Errorf("%w %q: client ID: %w", ErrBadSpec, arg, err)
		}
		if !slices.Contains(p.Allowed, id) {
			p.Allowed = append(p.Allowed, id)
		}
	}
	return p, nil
}

// decision is the agent's verdict on one stream.
type decision struct {
	code   stream.StatusCode // StatusOK, StatusDenied or StatusCredentialRequired
	reason string            // for the log and the client: "not listed", "not a member", …
}

// admitsByKey reports whether p lets client in by its key alone, with no
// credential: p is public, or private and lists client.
func (p Port) admitsByKey(client identity.ID) bool {
	return p.Access == Public || p.Access == Private && slices.Contains(p.Allowed, client)
}

// authorize decides whether client may use p, given the credential it
// presented (nil if none). fleetID is the agent's fleet (zero: none).
func authorize(p Port, client identity.ID, cred []byte, fleetID identity.ID, asked bool, now time.Time) decision {
	switch p.Access {
	case Public, Private:
		if p.admitsByKey(client) {
			return decision{code: stream.StatusOK}
		}
		return decision{stream.StatusDenied, "not listed"}
	case Protected:
		if len(cred) == 0 && !asked {
			return decision{stream.StatusCredentialRequired, fleetID.String()}
		}
		_, err := fleet.Verify(cred, fleetID, client, now)
		switch {
		case err == nil:
			return decision{code: stream.StatusOK}
		case errors.Is(err, fleet.ErrNotMember):
			return decision{stream.StatusDenied, "not a member"}
		case errors.Is(err, fleet.ErrExpired):
			return decision{stream.StatusDenied, "expired"}
		case errors.Is(err, fleet.ErrWrongFleet):
			return decision{stream.StatusDenied, "wrong fleet"}
		case errors.Is(err, fleet.ErrWrongMember):
			return decision{stream.StatusDenied, "credential of another member"}
		default:
			return decision{stream.StatusDenied, "malformed credential"}
		}
	}
	return decision{stream.StatusDenied, "unknown access mode"}
}

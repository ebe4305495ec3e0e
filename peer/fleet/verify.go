package fleet

import (
	"errors"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Verify wraps exactly one of these, so a device can log and report why it
// refused a client.
var (
	ErrNotMember     = errors.New("not a member")                    // no credential presented
	ErrWrongFleet    = errors.New("credential of another fleet")     // signed by a key other than the device's fleet
	ErrWrongMember   = errors.New("credential names another member") // not issued to the client presenting it
	ErrExpired       = errors.New("credential expired")              // or not yet valid
	ErrBadCredential = errors.New("malformed credential")            // does not parse, or its signature does not verify
)

// Verify checks the credential a client presented on a stream to a
// protected port: wire form, signed by fleet, issued to client (the key of
// the end-to-end connection, so a copied credential is useless elsewhere)
// and valid at now. It needs nothing but its arguments, so a device checks
// offline.
func Verify(wire []byte, fleet ID, client identity.ID, now time.Time) (*Credential, error) {
	if len(wire) == 0 {
		return nil, fmt.Errorf("%w: no credential presented", ErrNotMember)
	}
	// The zero ID is "no fleet". It is also an Ed25519 key of small order,
	// for which signatures can be forged without a private key.
	if fleet.IsZero() {
		return nil, fmt.Errorf("%w: this device belongs to no fleet", ErrWrongFleet)
	}
	c, err := parseWire(wire)
	if err != nil {
		return nil, err
	}
	if c.Fleet != fleet {
		return nil, fmt.Errorf("%w: signed by fleet %s, want fleet %s", ErrWrongFleet, c.Fleet.Short(), fleet.Short())
	}
	if c.Member != client {
		return nil, fmt.Errorf("%w: issued to %s, presented by %s", ErrWrongMember, c.Member.Short(), client.Short())
	}
	if err := c.checkTime(now); err != nil {
		return nil, err
	}
	return c, nil
}

// checkTime reports whether c is valid at now, as OpenSSH does: from
// ValidAfter inclusive to ValidBefore exclusive. Errors wrap ErrExpired.
func (c *Credential) checkTime(now time.Time) error {
	switch c.State(now) {
	case "not-yet-valid":
		return notYetValid{c.ValidAfter, now}
	case "expired":
		return fmt.Errorf("%w at %s (now %s)", ErrExpired, c.ValidBefore.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// notYetValid is ErrExpired with a message that says the window has not
// opened, not that it closed (a clock behind the admin's, or ssh-keygen -V
// with a future start).
type notYetValid struct{ from, now time.Time }

func (e notYetValid) Error() string {
	return fmt.Sprintf("credential not yet valid: valid from %s (now %s)", e.from.Format(time.RFC3339), e.now.UTC().Format(time.RFC3339))
}

func (e notYetValid) Unwrap() error { return ErrExpired }

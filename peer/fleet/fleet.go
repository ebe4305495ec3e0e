// Package fleet issues, checks and stores fleet membership credentials,
// and the name lists a fleet key signs for its members.
//
// A fleet is an Ed25519 key held by its admin. Membership is an OpenSSH
// user certificate that the fleet key signs for one member's node key, with
// an expiry, so `ssh-keygen -s fleet.key -I label -n <member-id> -V +30d
// member.pub` can issue one as well as `tunnel fleet add`. A device that
// publishes a protected port checks the credential offline, on every
// stream, against the client key of the end-to-end connection.
//
// Invariants:
//   - A Credential exists only after its certificate parsed and its
//     signature verified: a user certificate for an Ed25519 key, signed by
//     an Ed25519 key, with no critical options, a finite validity window
//     and exactly one principal, the ID of the certified key. Parse and
//     Issue both go through the same check.
//   - Parse proves only that the signature is valid for the key named in
//     the certificate; who that key is, is Verify's job. Verify compares
//     the signer with the fleet the device belongs to, the certified key
//     with the client's connection key, and the validity window with now.
//     A credential copied to another client is therefore useless.
//   - There is no revocation list: a membership ends when its credential
//     expires, so credentials always expire.
//   - Files: "fleet.key" in the home is the admin's fleet key (an OpenSSH
//     private key, 0600, only on the admin's machine, never overwritten);
//     "fleets/<fleet-id>.cert" holds this node's credential for one fleet
//     (0600 in a 0700 directory), written atomically; "fleet.names", beside
//     fleet.key, is the fleet's name list as its admin last signed it
//     (names.go has the format members import).
package fleet

import "github.com/tunnel-dev/tunnel/peer/identity"

// ID identifies a fleet: its public key. It has the form of a node ID, so
// it prints and parses the same way (identity.ParseID).
type ID = identity.ID

// KeyFile is the fleet admin key inside a home directory.
const KeyFile = "fleet.key"

// CertDir is the directory inside a home that holds this node's credentials,
// one file "<fleet-id>.cert" per fleet.
const CertDir = "fleets"

// Package identity owns a node's long-term key and the ID derived from it.
//
// A node's ID is the z-base-32 encoding of its 32-byte Ed25519 public key:
// 52 lowercase characters, one DNS label. The name is the key, so anyone who
// reaches a peer can check that it holds the key for the name they dialed
// without trusting a registry, a relay or DNS.
//
// This package is a leaf: it imports nothing else of the project, so that
// transport (TLS) and peer (agent, policy) can both use it.
package identity

import (
	"crypto/ed25519"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
)

// IDLen is the length of a textual ID.
const IDLen = 52

// zbase32 is the z-base-32 alphabet (human-oriented base-32, as Tor v3 and
// iroh use similar encodings); no padding.
var zbase32 = base32.NewEncoding("ybndrfg8ejkmcpqxot1uwisza345h769").WithPadding(base32.NoPadding)

// ID identifies a node: its Ed25519 public key.
type ID [ed25519.PublicKeySize]byte

// ErrMalformedID is returned for text that is not a valid node ID.
var ErrMalformedID = errors.New("malformed node ID")

// String returns the 52-character z-base-32 form.
func (id ID) String() string { return zbase32.EncodeToString(id[:]) }

// Short returns the first 8 characters, for logs.
func (id ID) Short() string { return id.String()[:8] }

// PublicKey returns the Ed25519 public key the ID names.
func (id ID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(id[:]) }

// IsZero reports whether id is the zero value (no ID).
func (id ID) IsZero() bool { return id == ID{} }

// ParseID parses the textual form of an ID. It is case-insensitive (ssh
// lowercases host names) and rejects anything that does not decode to exactly
// 32 bytes with no stray bits.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != IDLen {
		return id, fmt.Errorf("%w: %q has %d characters, want %d", ErrMalformedID, truncate(s), len(s), IDLen)
	}
	lower := strings.ToLower(s)
	b, err := zbase32.DecodeString(lower)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("%w: %q is not z-base-32", ErrMalformedID, truncate(s))
	}
	copy(id[:], b)
	// 52 characters carry 260 bits; the last 4 must be zero, or two
	// spellings would name one key.
	if id.String() != lower {
		return ID{}, fmt.Errorf("%w: %q has stray trailing bits", ErrMalformedID, truncate(s))
	}
	if id.Weak() {
		return ID{}, fmt.Errorf("%w: %q is a weak key no node can hold", ErrMalformedID, truncate(s))
	}
	return id, nil
}

// IDFromPublicKey converts an Ed25519 public key to an ID.
func IDFromPublicKey(pub ed25519.PublicKey) (ID, error) {
	var id ID
	if len(pub) != len(id) {
		return id, fmt.Errorf("%w: public key has %d bytes", ErrMalformedID, len(pub))
	}
	copy(id[:], pub)
	if id.Weak() {
		return ID{}, fmt.Errorf("%w: weak public key", ErrMalformedID)
	}
	return id, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

package fleet

// A fleet's signed name list: the NAME → ID entries a fleet admin hands
// every member ("names.signed"), so that "garage.tunnel" means the same
// device on every member's machine. It is a text file people can read in a
// diff, and exactly one spelling of each list is valid (Parse re-encodes
// what it read and compares), so what was verified is what is stored:
//
//	tunnel-names v1 fleet <fleet-id> serial <serial> issued <RFC 3339 UTC, seconds>
//	name <name> <device-id>         zero or more, sorted by name, names unique
//	sig <base64 of the Ed25519 signature>
//
// Every line ends in "\n" (no "\r", no other whitespace than one space
// between fields). <name> is a pet name (identity.ParsePetName, lowercase);
// <serial> is a decimal uint64 without leading zeros. The signature is the
// fleet key's, over namesContext followed by every byte of the file before
// "sig " — the context keeps it from ever being mistaken for a signature
// of anything else the fleet key signs (OpenSSH certificates start with a
// length, not with this text). A member accepts a list only from the fleet
// it joined and only with a serial not below the one it holds (a rollback
// to an older list is refused); the admin's serial is max(previous+1, Unix
// time), so it keeps rising even if the admin's copy of the list is lost.

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// ErrBadNames marks a name list that does not parse or whose signature
// does not verify. Verifying one of another fleet wraps ErrWrongFleet.
var ErrBadNames = errors.New("bad signed name list")

// namesContext is signed before the list's bytes (see the format above).
const namesContext = "tunnel fleet names v1\x00"

// MaxNamesFile bounds a signed name list: ~130 bytes an entry, so room for
// several thousand, and a bounded read of anything handed to import.
const MaxNamesFile = 1 << 20

// NameEntry is one name of a list.
type NameEntry struct {
	Name string
	ID   identity.ID
}

// NameList is a fleet's name list. A NameList returned by ParseNames was
// signed by Fleet; one built by hand is signed with Sign.
type NameList struct {
	Fleet   ID
	Serial  uint64
	Issued  time.Time
	Entries []NameEntry // sorted by Name, names unique
}

// Lookup returns the ID the list gives name.
func (l *NameList) Lookup(name string) (identity.ID, bool) {
	i, ok := slices.BinarySearchFunc(l.Entries, name, func(e NameEntry, n string) int { return strings.Compare(e.Name, n) })
	if !ok {
		return identity.ID{}, false
	}
	return l.Entries[i].ID, true
}

// Set adds name → id, or changes what name stands for; name must be a
// pet name (identity.ParsePetName).
func (l *NameList) Set(name string, id identity.ID) error {
	name, err := identity.ParsePetName(name)
	if err != nil {
		return err
	}
	if id.IsZero() {
		return fmt.Errorf("name %s: no device ID", name)
	}
	i, ok := slices.BinarySearchFunc(l.Entries, name, func(e NameEntry, n string) int { return strings.Compare(e.Name, n) })
	if ok {
		l.Entries[i].ID = id
	} else {
		l.Entries = slices.Insert(l.Entries, i, NameEntry{name, id})
	}
	return nil
}

// Remove removes name; it reports whether the list had it.
func (l *NameList) Remove(name string) bool {
	i, ok := slices.BinarySearchFunc(l.Entries, strings.ToLower(name), func(e NameEntry, n string) int { return strings.Compare(e.Name, n) })
	if ok {
		l.Entries = slices.Delete(l.Entries, i, i+1)
	}
	return ok
}

// body is the canonical encoding of everything the signature covers.
func (l *NameList) body() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "tunnel-names v1 fleet %s serial %d issued %s\n", l.Fleet, l.Serial, l.Issued.UTC().Format(time.RFC3339))
	for _, e := range l.Entries {
		fmt.Fprintf(&b, "name %s %s\n", e.Name, e.ID)
	}
	return b.Bytes()
}

// Sign returns the signed list, in the format above, signed by key, which
// must be the key of l.Fleet. Issued is truncated to seconds.
func (l *NameList) Sign(key *identity.Key) ([]byte, error) {
	if key.ID() != l.Fleet {
		return nil, fmt.Errorf("sign names of fleet %s: the key is fleet %s's", l.Fleet.Short(), key.ID().Short())
	}
	l.Issued = l.Issued.UTC().Truncate(time.Second)
	body := l.body()
	sig := ed25519.Sign(key.PrivateKey(), append([]byte(namesContext), body...))
	out := append(body, "sig "...)
	out = base64.StdEncoding.AppendEncode(out, sig)
	out = append(out, '\n')
	if len(out) > MaxNamesFile {
		return nil, fmt.Errorf("sign names of fleet %s: %d bytes, more than %d a member accepts; remove names", l.Fleet.Short(), len(out), MaxNamesFile)
	}
	return out, nil
}

// ParseNames parses a signed name list and checks that the fleet its
// header names signed it. Who that fleet is to the reader is VerifyNames'
// job. Errors wrap ErrBadNames and say which line is wrong.
func ParseNames(b []byte) (*NameList, error) {
	if len(b) > MaxNamesFile {
		return nil, badNames("%d bytes, more than %d", len(b), MaxNamesFile)
	}
	if len(b) == 0 {
		return nil, badNames("empty")
	}
	if b[len(b)-1] != '\n' {
		return nil, badNames("the last line does not end in a newline (truncated?)")
	}
	lines := strings.Split(string(b[:len(b)-1]), "\n")
	if len(lines) < 2 {
		return nil, badNames("want a header line, name lines and a sig line; got %d line(s)", len(lines))
	}
	header := strings.Split(lines[0], " ")
	if len(header) != 8 || header[0] != "tunnel-names" || header[2] != "fleet" || header[4] != "serial" || header[6] != "issued" {
		return nil, badNames("line 1: want \"tunnel-names v1 fleet FLEET_ID serial N issued TIME\", got %q", truncate(lines[0]))
	}
	if header[1] != "v1" {
		return nil, badNames("line 1: version %q, this tunnel reads v1 (a newer tunnel signed it?)", truncate(header[1]))
	}
	l := &NameList{}
	var err error
	if l.Fleet, err = identity.ParseID(header[3]); err != nil {
		return nil, badNames("line 1: fleet: %v", err)
	}
	if l.Serial, err = strconv.ParseUint(header[5], 10, 64); err != nil {
		return nil, badNames("line 1: serial %q is not a number", truncate(header[5]))
	}
	if l.Issued, err = time.Parse(time.RFC3339, header[7]); err != nil {
		return nil, badNames("line 1: issued %q is not an RFC 3339 time", truncate(header[7]))
	}
	for i, line := range lines[1 : len(lines)-1] {
		f := strings.Split(line, " ")
		if len(f) != 3 || f[0] != "name" {
			return nil, badNames("line %d: want \"name NAME DEVICE_ID\", got %q", i+2, truncate(line))
		}
		id, err := identity.ParseID(f[2])
		if err != nil {
			return nil, badNames("line %d: %v", i+2, err)
		}
		name, err := identity.ParsePetName(f[1])
		if err != nil {
			return nil, badNames("line %d: %v", i+2, err)
		}
		if n := len(l.Entries); n > 0 && l.Entries[n-1].Name >= name {
			return nil, badNames("line %d: name %q is out of order or repeated", i+2, name)
		}
		l.Entries = append(l.Entries, NameEntry{name, id})
	}
	last := lines[len(lines)-1]
	sigText, ok := strings.CutPrefix(last, "sig ")
	if !ok {
		return nil, badNames("line %d: want \"sig SIGNATURE\" last, got %q", len(lines), truncate(last))
	}
	sig, err := base64.StdEncoding.DecodeString(sigText)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, badNames("line %d: the signature is not %d bytes of base64", len(lines), ed25519.SignatureSize)
	}
	signed := b[:len(b)-len(last)-1]
	// One spelling per list: what verifies is exactly what we re-encode
	// and store, not a variant with other spacing, case or zeros.
	if !bytes.Equal(l.body(), signed) {
		return nil, badNames("not in canonical form (extra spaces, upper case, leading zeros or a time not in UTC seconds?)")
	}
	if l.Fleet.IsZero() {
		return nil, badNames("signed by the zero key")
	}
	if !ed25519.Verify(l.Fleet.PublicKey(), append([]byte(namesContext), signed...), sig) {
		return nil, badNames("the signature does not verify: the list was changed after fleet %s signed it, or someone else signed it", l.Fleet.Short())
	}
	return l, nil
}

// VerifyNames parses a signed name list and checks it is fleet's.
func VerifyNames(b []byte, fleet ID) (*NameList, error) {
	l, err := ParseNames(b)
	if err != nil {
		return nil, err
	}
	if l.Fleet != fleet {
		return nil, fmt.Errorf("%w: the names are fleet %s's, not fleet %s's", ErrWrongFleet, l.Fleet, fleet)
	}
	return l, nil
}

func badNames(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadNames}, args...)...)
}

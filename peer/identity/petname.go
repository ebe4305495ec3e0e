package identity

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadPetName marks a name that cannot stand for an ID.
var ErrBadPetName = errors.New("bad name")

// MaxPetNameLen is the longest pet name: one DNS label.
const MaxPetNameLen = 63

// ParsePetName checks a human name for a device (a pet name, or one of a
// fleet's signed names) and returns it lowercased: one DNS label of
// letters, digits and hyphens, 1 to 63 long, neither starting nor ending
// with a hyphen — and not itself a valid ID, so that "<name>.tunnel" and
// "<id>.tunnel" can never mean two devices. Errors wrap ErrBadPetName.
func ParsePetName(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrBadPetName)
	}
	if len(s) > MaxPetNameLen {
		return "", fmt.Errorf("%w: %q has %d characters, at most %d (one DNS label)", ErrBadPetName, truncate(s), len(s), MaxPetNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return "", fmt.Errorf("%w: %q: only letters, digits and hyphens (one DNS label, no dots)", ErrBadPetName, truncate(s))
		}
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return "", fmt.Errorf("%w: %q starts or ends with a hyphen", ErrBadPetName, s)
	}
	if _, err := ParseID(s); err == nil {
		return "", fmt.Errorf("%w: %q is a device ID; a name must not be one", ErrBadPetName, s)
	}
	return strings.ToLower(s), nil
}

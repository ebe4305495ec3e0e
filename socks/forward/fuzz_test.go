package forward

import (
	"errors"
	"testing"
)

// FuzzParseSpec: any string either parses into a spec whose canonical form
// parses back to it, or fails with ErrSpec; never a panic.
func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{"2222:garage:22", "[::1]:8022:garage:22", "*:0:" + testID + ":65535", "a:b:c:d:e", "[", "::::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSpec(in)
		if err != nil {
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("ParseSpec(%q): %v is not ErrSpec", in, err)
			}
			return
		}
		if s.Port == 0 || s.Host == "" {
			t.Fatalf("ParseSpec(%q) = %+v: no port or host", in, s)
		}
		again, err := ParseSpec(s.String())
		if err != nil || again != s {
			t.Fatalf("ParseSpec(%q) = %+v, but its String %q reads back as %+v, %v", in, s, s.String(), again, err)
		}
	})
}

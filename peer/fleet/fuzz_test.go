package fleet

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

func FuzzParse(f *testing.F) {
	fleetKey, member := newKey(f), newKey(f)
	now := time.Now()
	c, err := Issue(fleetKey, member.ID(), time.Hour, now)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Marshal())
	f.Add(c.Wire())
	f.Add(c.Wire()[:100])
	f.Add([]byte("ssh-ed25519-cert-v01@openssh.com AAAA"))
	f.Add([]byte("\x00\x00\x00\x20ssh-ed25519-cert-v01@openssh.com"))
	f.Add([]byte{})
	f.Add([]byte("garbage\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrBadCredential) {
				t.Fatalf("Parse error %v does not wrap ErrBadCredential", err)
			}
		} else {
			// Whatever Parse accepts survives both round trips unchanged
			// and fits in a stream header.
			wire := c.Wire()
			if len(wire) > MaxWireLen {
				t.Fatalf("accepted a credential of %d wire bytes", len(wire))
			}
			for _, form := range [][]byte{wire, c.Marshal()} {
				again, err := Parse(form)
				if err != nil {
					t.Fatalf("re-parse of an accepted credential: %v", err)
				}
				if !bytes.Equal(again.Wire(), wire) || again.Fleet != c.Fleet || again.Member != c.Member {
					t.Fatal("round trip changed the credential")
				}
			}
		}
		_, err = Verify(b, fleetKey.ID(), member.ID(), now)
		n := 0
		for _, s := range sentinels {
			if errors.Is(err, s) {
				n++
			}
		}
		if err != nil && n != 1 {
			t.Fatalf("Verify error %v wraps %d sentinels, want 1", err, n)
		}
		if err == nil && (c == nil || !bytes.Equal(b, c.Wire())) {
			t.Fatalf("Verify accepted what Parse did not: %q", b)
		}
	})
}

// A signed name list comes from whoever hands a member a file to import.
func FuzzParseNames(f *testing.F) {
	_, signed := signedList(f)
	f.Add(signed)
	f.Add(signed[:len(signed)/2])
	f.Add(bytes.Replace(signed, []byte("name garage"), []byte("name garag3"), 1))
	f.Add([]byte("tunnel-names v1 fleet x serial 1 issued 2026-01-01T00:00:00Z\nsig AAAA\n"))
	f.Add([]byte{})
	f.Add([]byte("\n\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := ParseNames(b)
		if err != nil {
			if !errors.Is(err, ErrBadNames) || l != nil {
				t.Fatalf("ParseNames = %v, %v: want nil and ErrBadNames", l, err)
			}
			return
		}
		// What is accepted is canonical: its own encoding, sorted unique
		// pet names, and it verifies as its own fleet's, only.
		if !bytes.HasPrefix(b, l.body()) {
			t.Fatalf("accepted a list whose body is not its canonical encoding:\n%q", b)
		}
		for i, e := range l.Entries {
			if n, err := identity.ParsePetName(e.Name); err != nil || n != e.Name || i > 0 && l.Entries[i-1].Name >= e.Name {
				t.Fatalf("accepted entry %q: %v", e.Name, err)
			}
		}
		if _, err := VerifyNames(b, l.Fleet); err != nil {
			t.Fatalf("VerifyNames of a list ParseNames took: %v", err)
		}
	})
}

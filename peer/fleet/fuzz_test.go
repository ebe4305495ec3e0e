package fleet

import (
	"bytes"
	"errors"
	"testing"
	"time"
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

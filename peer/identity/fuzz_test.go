package identity

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

// IDs come from everywhere: names typed by users and sent by SOCKS clients,
// flags, registry replies, Redis records. A key file comes from disk, where
// anything may have been put.

func FuzzParseID(f *testing.F) {
	s := fixedKey(1).ID().String()
	f.Add(s)
	f.Add(strings.ToUpper(s))
	f.Add(ID{}.String())
	f.Add(s[:51] + "9")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrMalformedID) || !id.IsZero() {
				t.Fatalf("ParseID(%q) = %s, %v: want a zero ID and ErrMalformedID", s, id, err)
			}
			return
		}
		// One spelling per key, up to case; no key no node can hold.
		if id.String() != strings.ToLower(s) || len(s) != IDLen {
			t.Fatalf("ParseID(%q) = %s", s, id)
		}
		if id.Weak() {
			t.Fatalf("ParseID(%q) took a weak key", s)
		}
		if again, err := ParseID(id.String()); err != nil || again != id {
			t.Fatalf("ParseID(%q) = %s, whose String parses to %s, %v", s, id, again, err)
		}
		if again, err := IDFromPublicKey(id.PublicKey()); err != nil || again != id {
			t.Fatalf("ParseID(%q) = %s; IDFromPublicKey of its key gives %s, %v", s, id, again, err)
		}
	})
}

func FuzzParseKeyFile(f *testing.F) {
	f.Add(keyFile(f, fixedKey(1).PrivateKey()))
	f.Add([]byte("-----BEGIN OPENSSH PRIVATE KEY-----\n-----END OPENSSH PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKeyFile(data)
		if err != nil {
			if k != nil {
				t.Fatal("ParseKeyFile failed but returned a key")
			}
			return
		}
		// The ID is the key the seed makes, so the node can prove it;
		// a weak one no seed makes.
		priv := k.PrivateKey()
		want := ed25519.NewKeyFromSeed(priv.Seed())
		if !bytes.Equal(priv, want) || !bytes.Equal(k.ID().PublicKey(), want.Public().(ed25519.PublicKey)) {
			t.Fatalf("ParseKeyFile took a key whose ID %s is not its seed's", k.ID())
		}
		if k.ID().Weak() {
			t.Fatalf("ParseKeyFile took weak key %s", k.ID())
		}
		// What parses round-trips through WriteKeyFile's format.
		again, err := ParseKeyFile(keyFile(t, priv))
		if err != nil || again.ID() != k.ID() || !bytes.Equal(again.PrivateKey(), priv) {
			t.Fatalf("key %s written and read again: %v", k.ID(), err)
		}
	})
}

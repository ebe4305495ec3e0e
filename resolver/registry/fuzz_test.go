package registry

import (
	"bytes"
	"crypto/ed25519"
	"strings"
	"testing"
	"unicode"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// A node reads other nodes' presence records from Redis, which any node
// sharing it (or anyone who can reach it) may have written.

// fixedID is a deterministic ID, so that the committed corpus names it.
func fixedID(seed byte) identity.ID {
	return identity.FromPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))).ID()
}

func FuzzParseValue(f *testing.F) {
	p := &RedisPresence{Node: fixedID(1), Advertise: "10.0.0.1:7443"}
	f.Add(p.value(Record{Endpoint: 0x0123456789abcdef}))
	f.Add(fixedID(1).String() + " 10.0.0.1:7443 0")
	f.Add("x y z")
	f.Fuzz(func(t *testing.T, v string) {
		rec, err := parseValue(v)
		if err != nil {
			return
		}
		if rec.Endpoint == 0 || rec.Node.Weak() || rec.Addr == "" || strings.IndexFunc(rec.Addr, unicode.IsSpace) >= 0 {
			t.Fatalf("parseValue(%q) = %+v", v, rec)
		}
		// The record is what the node it names would have written, and
		// that parses to the same record.
		home := &RedisPresence{Node: rec.Node, Advertise: rec.Addr}
		stored := home.value(rec)
		if again, err := parseValue(stored); err != nil || again != rec {
			t.Fatalf("parseValue(%q) = %+v; written back as %q, it parses to %+v, %v", v, rec, stored, again, err)
		}
	})
}

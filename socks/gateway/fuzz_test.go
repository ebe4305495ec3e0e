package gateway

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// The Host header is the first thing a stranger's browser sends the
// gateway, and the gateway's domain comes from a flag.

// fixedID is a deterministic ID, so that the committed corpus names it.
func fixedID(seed byte) identity.ID {
	return identity.FromPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))).ID()
}

func FuzzParseHost(f *testing.F) {
	s := fixedID(1).String()
	f.Add(s+".example.test", testDomain)
	f.Add(strings.ToUpper(s)+"-8080.GW.Example.:443", "gw.example")
	f.Add("["+s+".example.test]:80", testDomain)
	f.Fuzz(func(t *testing.T, host, domain string) {
		d, err := CheckDomain(domain)
		if err != nil {
			d = testDomain
		}
		id, port, err := ParseHost(host, d)
		if err != nil {
			if errors.Is(err, ErrForeignHost) == errors.Is(err, ErrNoDevice) || !id.IsZero() || port != 0 {
				t.Fatalf("ParseHost(%q, %q) = %s, %d, %v: want zero and one of ErrForeignHost, ErrNoDevice", host, d, id, port, err)
			}
			return
		}
		if port == 0 || id.Weak() {
			t.Fatalf("ParseHost(%q, %q) = %s, %d", host, d, id, port)
		}
		// The host is the device's name, up to case, as ParseHost's
		// comment spells it — <id>.DOMAIN for port 80, <id>-PORT.DOMAIN
		// — then at most one trailing dot and a :port.
		var names []string
		if port == DefaultHTTPPort {
			names = append(names, id.String()+"."+d)
		}
		names = append(names, id.String()+"-"+strconv.Itoa(int(port))+"."+d)
		var rest string
		matched := false
		for _, name := range names {
			if len(host) >= len(name) && strings.EqualFold(host[:len(name)], name) {
				rest, matched = host[len(name):], true
				break
			}
		}
		rest = strings.TrimPrefix(rest, ".")
		if !matched || (rest != "" && (rest[0] != ':' || strings.Trim(rest[1:], "0123456789") != "")) {
			t.Fatalf("ParseHost(%q, %q) = %s, %d: the host is not that device's name", host, d, id, port)
		}
		if again, p, err := ParseHost(names[len(names)-1], d); err != nil || again != id || p != port {
			t.Fatalf("ParseHost(%q, %q) = %s, %d; the name %q parses to %s, %d, %v", host, d, id, port, names[len(names)-1], again, p, err)
		}
	})
}

package resolver

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Names arrive from SOCKS clients, HTTP CONNECT lines and gateways' Host
// headers; relay addresses from flags and TUNNEL_RELAY.

// fixedID is a deterministic ID, so that the committed corpus names it.
func fixedID(seed byte) identity.ID {
	return identity.FromPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))).ID()
}

func FuzzParseName(f *testing.F) {
	s := fixedID(1).String()
	f.Add(s + ".tunnel")
	f.Add("app." + strings.ToUpper(s) + ".TUNNEL.")
	f.Add("127.0.0.1")
	f.Add("[fe80::1%" + s + ".tunnel]")
	f.Fuzz(func(t *testing.T, host string) {
		id, isTunnel, err := ParseName(host)
		h := strings.TrimSuffix(host, ".")
		lit := strings.Trim(h, "[]")
		if _, perr := netip.ParseAddr(lit); (perr == nil || net.ParseIP(lit) != nil) && isTunnel {
			t.Fatalf("ParseName(%q): an IP literal taken as a .tunnel name", host)
		}
		if !isTunnel {
			if err != nil || !id.IsZero() {
				t.Fatalf("ParseName(%q) = %s, not .tunnel, %v", host, id, err)
			}
			return
		}
		if len(h) < len(Suffix) || !strings.EqualFold(h[len(h)-len(Suffix):], Suffix) {
			t.Fatalf("ParseName(%q) took a name that does not end in %s", host, Suffix)
		}
		if err != nil {
			if !errors.Is(err, ErrMalformedName) || !id.IsZero() {
				t.Fatalf("ParseName(%q) = %s, %v: want a zero ID and ErrMalformedName", host, id, err)
			}
			return
		}
		// The ID is the last label before .tunnel, as String spells it
		// up to case.
		want := id.String() + Suffix
		if id.Weak() || len(h) < len(want) || !strings.EqualFold(h[len(h)-len(want):], want) ||
			(len(h) > len(want) && h[len(h)-len(want)-1] != '.') {
			t.Fatalf("ParseName(%q) = %s, not its last label before %s", host, id, Suffix)
		}
	})
}

func FuzzParseRelayAddr(f *testing.F) {
	f.Add("relay.example:7443")
	f.Add(fixedID(1).String() + "@[2001:db8::1]:7443")
	f.Add("@:0")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseRelayAddr(s)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(a.HostPort)
		if err != nil || host == "" || port == "0" || strings.Contains(a.HostPort, "@") {
			t.Fatalf("ParseRelayAddr(%q) = %+v, not a host:port", s, a)
		}
		if !a.ID.IsZero() && a.ID.Weak() {
			t.Fatalf("ParseRelayAddr(%q) pins weak key %s", s, a.ID)
		}
		if again, err := ParseRelayAddr(a.String()); err != nil || again != a {
			t.Fatalf("ParseRelayAddr(%q) = %+v; its String %q parses to %+v, %v", s, a, a.String(), again, err)
		}
	})
}

func FuzzParseRelayList(f *testing.F) {
	f.Add("10.0.0.1:7443")
	f.Add(fixedID(1).String() + "@10.0.0.1:7443, " + fixedID(2).String() + "@10.0.0.2:7443")
	f.Add("a:1,,b:2")
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseRelayList(s)
		if err != nil {
			if l != nil {
				t.Fatalf("ParseRelayList(%q) failed but returned %v", s, l)
			}
			return
		}
		if len(l) == 0 || len(l) != strings.Count(s, ",")+1 {
			t.Fatalf("ParseRelayList(%q) = %d addresses", s, len(l))
		}
		for _, a := range l {
			if one, err := ParseRelayAddr(a.String()); err != nil || one != a {
				t.Fatalf("ParseRelayList(%q) holds %+v, which ParseRelayAddr reads as %+v, %v", s, a, one, err)
			}
		}
		if again, err := ParseRelayList(RelayListString(l)); err != nil || !slices.Equal(again, l) {
			t.Fatalf("ParseRelayList(%q) = %v; RelayListString %q parses to %v, %v", s, l, RelayListString(l), again, err)
		}
	})
}

package resolver

import (
	"errors"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

func TestParseName(t *testing.T) {
	k, _ := identity.Generate()
	id := k.ID().String()
	good := []string{
		id + ".tunnel",
		strings.ToUpper(id) + ".TUNNEL",
		id + ".tunnel.",
		"app." + id + ".tunnel",
		"a.b." + id + ".Tunnel",
	}
	for _, h := range good {
		got, ok, err := ParseName(h)
		if err != nil || !ok || got != k.ID() {
			t.Errorf("ParseName(%q) = %v, %v, %v", h, got, ok, err)
		}
	}
	notTunnel := []string{"example.com", "127.0.0.1", "::1", "[::1]", "tunnel", "", id, id + ".tunnels", "10.0.0.1.tunnel"}
	for _, h := range notTunnel {
		if _, ok, err := ParseName(h); h == "10.0.0.1.tunnel" {
			if !ok || !errors.Is(err, ErrMalformedName) {
				t.Errorf("ParseName(%q): ok=%v err=%v, want malformed", h, ok, err)
			}
		} else if ok || err != nil {
			t.Errorf("ParseName(%q) = ok=%v err=%v, want not .tunnel", h, ok, err)
		}
	}
	for _, h := range []string{".tunnel", "x.tunnel", id[1:] + ".tunnel", id + "..tunnel"} {
		if _, ok, err := ParseName(h); !ok || !errors.Is(err, ErrMalformedName) {
			t.Errorf("ParseName(%q): ok=%v err=%v, want malformed", h, ok, err)
		}
	}
}

func TestDeviceLabel(t *testing.T) {
	for host, want := range map[string]string{
		"garage.tunnel":      "garage",
		"Garage.TUNNEL.":     "garage",
		"app.garage.tunnel":  "garage",
		"example.com":        "",
		"127.0.0.1":          "",
		"[::1]":              "",
		".tunnel":            "",
		"tunnel":             "",
		"x.garage.tunnel.":   "garage",
		"GARAGE.tunnel":      "garage",
		"not-a-name.example": "",
	} {
		if got := DeviceLabel(host); got != want {
			t.Errorf("DeviceLabel(%q) = %q, want %q", host, got, want)
		}
	}
}

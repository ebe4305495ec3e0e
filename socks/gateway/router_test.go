package gateway

import (
	"errors"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

func newID(t *testing.T) identity.ID {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k.ID()
}

func TestParseHost(t *testing.T) {
	id := newID(t)
	s := id.String()
	const domain = "example.test"
	good := []struct {
		host string
		port uint16
	}{
		{s + ".example.test", 80},
		{strings.ToUpper(s) + ".EXAMPLE.TEST:8443", 80},
		{s + "-8080.example.test", 8080},
		{s + "-8080.Example.Test.", 8080},
		{s + "-1.example.test:80", 1},
		{s + "-65535.example.test", 65535},
	}
	for _, tc := range good {
		gotID, port, err := ParseHost(tc.host, domain)
		if err != nil || gotID != id || port != tc.port {
			t.Errorf("ParseHost(%q) = %s, %d, %v; want %s, %d", tc.host, gotID.Short(), port, err, id.Short(), tc.port)
		}
	}
	bad := []struct {
		host string
		want error
	}{
		{"", ErrForeignHost},
		{s + ".other.test", ErrForeignHost},
		{s + ".example.test.evil", ErrForeignHost},
		{s + "example.test", ErrForeignHost}, // not a label boundary
		{"127.0.0.1", ErrForeignHost},
		{"127.0.0.1:80", ErrForeignHost},
		{"[::1]:80", ErrForeignHost},
		{"example.test", ErrNoDevice},
		{"example.test:443", ErrNoDevice},
		{".example.test", ErrNoDevice},
		{"x.example.test", ErrNoDevice},
		{s[:51] + ".example.test", ErrNoDevice},
		{s + "-0.example.test", ErrNoDevice},
		{s + "-70000.example.test", ErrNoDevice},
		{s + "-65536.example.test", ErrNoDevice},
		{s + "-080.example.test", ErrNoDevice}, // one spelling per port
		{s + "-+80.example.test", ErrNoDevice},
		{s + "-.example.test", ErrNoDevice},
		{s + "-80-80.example.test", ErrNoDevice},
		{"-8080.example.test", ErrNoDevice},
		{"a.b." + s + ".example.test", ErrNoDevice}, // extra labels: not served
		{"app." + s + ".example.test", ErrNoDevice},
		{s + ".tunnel", ErrForeignHost},
	}
	for _, tc := range bad {
		gotID, port, err := ParseHost(tc.host, domain)
		if !errors.Is(err, tc.want) {
			t.Errorf("ParseHost(%q) = %s, %d, %v; want %v", tc.host, gotID.Short(), port, err, tc.want)
		}
		if err != nil && (!gotID.IsZero() || port != 0) {
			t.Errorf("ParseHost(%q) failed but returned %s, %d", tc.host, gotID.Short(), port)
		}
	}
}

func TestCheckDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.test":         "example.test",
		"Gateway.Example.COM.": "gateway.example.com",
		"localhost":            "localhost",
		"a-b.c0":               "a-b.c0",
	} {
		if got, err := CheckDomain(in); err != nil || got != want {
			t.Errorf("CheckDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", "a..b", "-a.test", "a-.test", "a_b.test", "a b", "*.example.test",
		"example.test:80", "x.tunnel", "tunnel", strings.Repeat("a", 64) + ".test", strings.Repeat("abcdefghi.", 20) + "test"} {
		if got, err := CheckDomain(in); err == nil {
			t.Errorf("CheckDomain(%q) = %q, want an error", in, got)
		}
	}
}

package main

import (
	"crypto/ed25519"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// ssh gives %H twice for a port other than 22: the bare name, then the
// known_hosts form [NAME]:PORT. Both must print lines keyed [NAME]:PORT.
func TestKnownHostsName(t *testing.T) {
	for _, c := range []struct {
		host      string
		port      uint16
		portGiven bool
		wantHost  string
		wantPort  uint16
		bad       bool
	}{
		{host: "garage.tunnel", port: 22, wantHost: "garage.tunnel", wantPort: 22},
		{host: "garage.tunnel", port: 2222, portGiven: true, wantHost: "garage.tunnel", wantPort: 2222},
		{host: "[garage.tunnel]:2222", port: 2222, portGiven: true, wantHost: "garage.tunnel", wantPort: 2222},
		{host: "[garage.tunnel]:2222", port: 22, wantHost: "garage.tunnel", wantPort: 2222},
		{host: "[garage.tunnel]:2222", port: 2223, portGiven: true, bad: true},
		{host: "[garage.tunnel]", port: 22, bad: true},
		{host: "[garage.tunnel]:0", port: 22, bad: true},
		{host: "[garage.tunnel]:99999", port: 22, bad: true},
	} {
		h, p, err := knownHostsName(c.host, c.port, c.portGiven)
		if c.bad {
			if !isUsageError(err) {
				t.Errorf("%q %d: %v, want a usage error", c.host, c.port, err)
			}
			continue
		}
		if err != nil || h != c.wantHost || p != c.wantPort {
			t.Errorf("%q %d: %q %d %v, want %q %d", c.host, c.port, h, p, err, c.wantHost, c.wantPort)
		}
	}
	pub, _, _ := ed25519.GenerateKey(nil)
	k, _ := ssh.NewPublicKey(pub)
	if l := knownHostsLine("Garage.Tunnel", 2222, k); !strings.HasPrefix(l, "[garage.tunnel]:2222 ssh-ed25519 ") || !strings.HasSuffix(l, "\n") {
		t.Errorf("line %q", l)
	}
	if l := knownHostsLine("garage.tunnel", 22, k); !strings.HasPrefix(l, "garage.tunnel ssh-ed25519 ") {
		t.Errorf("line %q", l)
	}
}

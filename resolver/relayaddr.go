package resolver

import (
	"fmt"
	"net"
	"strings"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// RelayAddr is where a rendezvous node is: "host:port", optionally with
// the node's ID in front ("ID@host:port"), in which case a node proving any
// other key is refused.
type RelayAddr struct {
	ID       identity.ID // zero: not checked
	HostPort string
}

func (a RelayAddr) String() string {
	if a.ID.IsZero() {
		return a.HostPort
	}
	return a.ID.String() + "@" + a.HostPort
}

// ParseRelayAddr parses "host:port" or "ID@host:port".
func ParseRelayAddr(s string) (RelayAddr, error) {
	var a RelayAddr
	hp := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		id, err := identity.ParseID(s[:i])
		if err != nil {
			return a, fmt.Errorf("relay address %q: %w", s, err)
		}
		a.ID, hp = id, s[i+1:]
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return a, fmt.Errorf("relay address %q: want host:port or ID@host:port: %w", s, err)
	}
	if host == "" {
		return a, fmt.Errorf("relay address %q: empty host", s)
	}
	if _, err := net.LookupPort("udp", port); err != nil || port == "0" {
		return a, fmt.Errorf("relay address %q: bad port %q", s, port)
	}
	a.HostPort = hp
	return a, nil
}

// ParseRelayList parses a comma-separated list of relay addresses
// ("A,B,…"): several rendezvous nodes sharing a registry.
func ParseRelayList(s string) ([]RelayAddr, error) {
	var l []RelayAddr
	for part := range strings.SplitSeq(s, ",") {
		a, err := ParseRelayAddr(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		l = append(l, a)
	}
	return l, nil
}

// RelayListString is the comma-separated form of l.
func RelayListString(l []RelayAddr) string {
	s := make([]string, len(l))
	for i, a := range l {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

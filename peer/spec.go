package peer

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Port is one published port: the port clients ask for (Remote), the TCP
// address the agent dials for it (Target), and who may use it.
type Port struct {
	Remote  uint16
	Target  string // host:port
	Access  Access
	Allowed []identity.ID // the clients of a Private port
	// Fleet is the fleet whose members may use a Protected port; zero
	// for the agent's.
	Fleet identity.ID
	// ProxyProtocol makes the agent send a PROXY v2 header naming the
	// client before its bytes.
	ProxyProtocol bool
}

// ErrBadSpec is wrapped by every port-spec parse error.
var ErrBadSpec = errors.New("bad port spec")

// ParsePortSpec parses `[host:]local[:remote]`:
//
//	22                  local port 22 published as 22
//	2222:22             local port 2222 published as 22
//	192.168.1.5:80:8080 a LAN neighbour's port 80 published as 8080
//	[::1]:80:8080       an IPv6 host, bracketed
//
// With no host the agent dials localhost.
func ParsePortSpec(spec string) (Port, error) {
	bad := func(why string) (Port, error) {
		return Port{}, fmt.Errorf("%w %q: %s (want [host:]local[:remote], e.g. 22, 2222:22, 192.168.1.5:80:8080)", ErrBadSpec, spec, why)
	}
	host := "localhost"
	rest := spec
	bracketed := strings.HasPrefix(rest, "[")
	if bracketed {
		end := strings.Index(rest, "]")
		if end < 0 || end+1 >= len(rest) || rest[end+1] != ':' {
			return bad("unterminated [IPv6] host")
		}
		host, rest = rest[1:end], rest[end+2:]
		if host == "" {
			return bad("empty host")
		}
	}
	parts := strings.Split(rest, ":")
	var local, remote string
	switch {
	case bracketed && len(parts) == 1:
		local, remote = parts[0], parts[0]
	case bracketed && len(parts) == 2:
		local, remote = parts[0], parts[1]
	case bracketed:
		// A bracketed host is the host: [::1]:80:8080:9 is not the
		// spec 80:8080:9 (host 80) with [::1] dropped.
		return bad("too many ':'")
	case len(parts) == 1:
		local, remote = parts[0], parts[0]
	case len(parts) == 2:
		// local:remote, or host:local? Digits decide: a host is never all digits.
		if _, err := strconv.Atoi(parts[0]); err == nil {
			local, remote = parts[0], parts[1]
		} else {
			host, local, remote = parts[0], parts[1], parts[1]
		}
	case len(parts) == 3:
		host, local, remote = parts[0], parts[1], parts[2]
	default:
		return bad("too many ':'")
	}
	if host == "" {
		return bad("empty host")
	}
	if strings.ContainsAny(host, "[]") {
		// The target would not split back into host and port: a spec
		// the agent could never dial.
		return bad("'[' or ']' in host (bracket only a whole IPv6 host: [::1]:80)")
	}
	lp, err := parsePort(local)
	if err != nil {
		return bad("local port: " + err.Error())
	}
	rp, err := parsePort(remote)
	if err != nil {
		return bad("published port: " + err.Error())
	}
	return Port{Remote: rp, Target: net.JoinHostPort(host, strconv.Itoa(int(lp)))}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("empty")
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return uint16(n), nil
}

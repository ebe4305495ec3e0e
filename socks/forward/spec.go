package forward

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/tunnel-dev/tunnel/resolver"
)

// Sentinel errors callers branch on (a CLI maps both to a usage error).
var (
	// ErrSpec: the SPEC does not parse.
	ErrSpec = errors.New("malformed bind spec")
	// ErrRemote: the SPEC listens beyond loopback without AllowRemote.
	ErrRemote = errors.New("not loopback")
)

// DefaultListenHost is where a SPEC without LISTENHOST listens, as ssh -L
// does with GatewayPorts off.
const DefaultListenHost = "127.0.0.1"

// maxSpecLen bounds what ParseSpec looks at: a SPEC comes from a command
// line, and an error message quotes it.
const maxSpecLen = 512

// Spec is one local forward, `[LISTENHOST:]LOCALPORT:HOST:PORT` in ssh -L
// order.
type Spec struct {
	// ListenHost is an IP address or a host name; "" listens on every
	// interface (written `*`, as ssh writes it).
	ListenHost string
	// ListenPort 0 takes any free port: the listener's Addr says which.
	ListenPort uint16
	// Host always ends in .tunnel: a device ID or a pet name, with any
	// labels left of it passed through.
	Host string
	Port uint16 // 1 to 65535
}

// Listen is the TCP address to listen on.
func (s Spec) Listen() string {
	return net.JoinHostPort(s.ListenHost, strconv.Itoa(int(s.ListenPort)))
}

// Target is HOST:PORT, as a stream is dialed.
func (s Spec) Target() string {
	return net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port)))
}

// String is the SPEC in the canonical form ParseSpec reads back.
func (s Spec) String() string {
	lh := s.ListenHost
	switch {
	case lh == "":
		lh = "*"
	case strings.Contains(lh, ":"):
		lh = "[" + lh + "]"
	}
	return fmt.Sprintf("%s:%d:%s:%d", lh, s.ListenPort, s.Host, s.Port)
}

// Loopback reports whether the spec listens on loopback only: a loopback
// address, or the name localhost (which every resolver this runs with
// maps to loopback). Any other host name may resolve to anything, so it
// counts as remote.
func (s Spec) Loopback() bool {
	if strings.EqualFold(s.ListenHost, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(s.ListenHost)
	return err == nil && a.IsLoopback()
}

// CheckListen refuses a spec that listens beyond loopback unless
// allowRemote: whoever reaches such a port dials with this node's key and
// fleet credentials.
func (s Spec) CheckListen(allowRemote bool) error {
	if s.Loopback() || allowRemote {
		return nil
	}
	where := s.ListenHost
	if where == "" {
		where = "every interface"
	}
	return fmt.Errorf("bind %s: %w: whoever reaches %s would use this node's key and fleet credentials; "+
		"listen on 127.0.0.1 (the default), or pass --allow-remote if that is meant", s, ErrRemote, where)
}

// ParseSpec reads `[LISTENHOST:]LOCALPORT:HOST:PORT`:
//
//   - LISTENHOST: an IPv4 address, an IPv6 address in brackets
//     (`[::1]:8022:garage:22`), a host name, or `*` for every interface;
//     default 127.0.0.1. (ssh also takes an empty LISTENHOST for every
//     interface; here it is an error, as it is easily typed by mistake.)
//   - LOCALPORT: 0 to 65535; 0 takes any free port, as ssh does.
//   - HOST: a device ID or a name, `.tunnel` optional (added when
//     missing), not an IP address.
//   - PORT: 1 to 65535.
func ParseSpec(spec string) (Spec, error) {
	bad := func(format string, args ...any) (Spec, error) {
		q := spec
		if len(q) > 64 {
			q = strings.ToValidUTF8(q[:64], "") + "…"
		}
		return Spec{}, fmt.Errorf("%w %q: %s; a SPEC is [LISTENHOST:]LOCALPORT:HOST:PORT", ErrSpec, q, fmt.Sprintf(format, args...))
	}
	if len(spec) > maxSpecLen {
		return bad("longer than %d bytes", maxSpecLen)
	}
	var s Spec
	rest := spec
	listenHost, bracketed := DefaultListenHost, false
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return bad("LISTENHOST %q has no closing bracket", rest)
		}
		listenHost, rest, bracketed = rest[1:end], rest[end+1:], true
		if !strings.HasPrefix(rest, ":") {
			return bad("want ':' after ]")
		}
		rest = rest[1:]
	}
	if strings.ContainsAny(rest, "[]") {
		return bad("HOST is a device ID or a name, not an address in brackets")
	}
	parts := strings.Split(rest, ":")
	switch {
	case bracketed && len(parts) == 3:
	case !bracketed && len(parts) == 4:
		listenHost = parts[0]
		parts = parts[1:]
	case !bracketed && len(parts) == 3:
	case !bracketed && len(parts) > 4:
		return bad("too many ':' (an IPv6 LISTENHOST goes in brackets: [::1]:8022:HOST:PORT)")
	default:
		return bad("%d fields, not 3 or 4 separated by ':'", len(parts)+btoi(bracketed))
	}
	var err error
	if s.ListenHost, err = parseListenHost(listenHost, bracketed); err != nil {
		return bad("LISTENHOST %q: %v", listenHost, err)
	}
	lp, err := parsePort(parts[0], true)
	if err != nil {
		return bad("LOCALPORT %q: %v", parts[0], err)
	}
	s.ListenPort = lp
	if s.Host, err = parseHost(parts[1]); err != nil {
		return bad("HOST %q: %v", parts[1], err)
	}
	if s.Port, err = parsePort(parts[2], false); err != nil {
		return bad("PORT %q: %v", parts[2], err)
	}
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// parsePort reads a decimal port: digits only (no sign, no spaces), 1 to
// 65535, or 0 too if zeroOK.
func parsePort(p string, zeroOK bool) (uint16, error) {
	want := "want 1 to 65535"
	if zeroOK {
		want = "want 0 (any free port) to 65535"
	}
	if p == "" || len(p) > 5 || strings.Trim(p, "0123456789") != "" {
		return 0, errors.New(want)
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || (n == 0 && !zeroOK) {
		return 0, errors.New(want)
	}
	return uint16(n), nil
}

// parseListenHost reads LISTENHOST: `*` is every interface (""), an IPv6
// address only in brackets, otherwise an IPv4 address or a host name.
func parseListenHost(h string, bracketed bool) (string, error) {
	if bracketed {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return "", errors.New("want an IPv6 address inside brackets")
		}
		return h, nil
	}
	switch h {
	case "*":
		return "", nil
	case "":
		return "", errors.New("empty; write * to listen on every interface, or leave LISTENHOST out for 127.0.0.1")
	}
	if a, err := netip.ParseAddr(h); err == nil {
		if a.Is6() {
			return "", errors.New("an IPv6 address goes in brackets")
		}
		return h, nil
	}
	if err := checkDNSName(h); err != nil {
		return "", err
	}
	return h, nil
}

// parseHost reads HOST and returns it as a .tunnel name.
func parseHost(h string) (string, error) {
	if h == "" {
		return "", errors.New("empty; want a device ID or a name")
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return "", errors.New("an address; want a device ID or a name (a bind reaches devices only)")
	}
	h = strings.TrimSuffix(h, ".")
	if !strings.HasSuffix(strings.ToLower(h), resolver.Suffix) {
		h += resolver.Suffix
	}
	if err := checkDNSName(h); err != nil {
		return "", err
	}
	if resolver.DeviceLabel(h) == "" || strings.HasPrefix(h, ".") {
		return "", errors.New("no device ID or name before .tunnel")
	}
	return h, nil
}

// checkDNSName accepts letters, digits and hyphens in dot-separated labels
// of 1 to 63 bytes, 253 in all; a label neither starts nor ends with a
// hyphen.
func checkDNSName(h string) error {
	if len(h) > 253 {
		return errors.New("longer than 253 bytes")
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" {
			return errors.New("an empty label")
		}
		if len(l) > 63 {
			return fmt.Errorf("label %.16q… longer than 63 bytes", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with '-'", l)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				if c >= 0x80 {
					return errors.New("only ASCII letters, digits, '-' and '.' are allowed in a name")
				}
				return fmt.Errorf("%q is not allowed in a name", rune(c))
			}
		}
	}
	return nil
}

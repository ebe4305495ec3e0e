package gateway

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// DefaultHTTPPort is the device port that <id>.DOMAIN reaches.
const DefaultHTTPPort = 80

// Outcomes of ParseHost.
var (
	// ErrForeignHost: the Host is not a name under the gateway's domain
	// (another domain, an IP literal, no Host at all).
	ErrForeignHost = errors.New("host is not served by this gateway")
	// ErrNoDevice: the Host is under the domain but names no device: the
	// domain itself, extra labels, a malformed ID or port.
	ErrNoDevice = errors.New("not a device name")
)

// ParseHost maps an HTTP Host to a device and port:
//
//	<id>.DOMAIN        port 80 of device <id>
//	<id>-<port>.DOMAIN that port (1-65535, decimal, no leading zero)
//
// Matching is case-insensitive; a port after the name (Host:
// <id>.DOMAIN:8443) and one trailing dot are ignored. Exactly one label
// may stand left of DOMAIN: a wildcard certificate for *.DOMAIN covers
// exactly those names, and one spelling per device port keeps routing
// unambiguous, so a.<id>.DOMAIN is ErrNoDevice (unlike .tunnel names,
// which pass extra labels through). domain must be lowercase, without a
// trailing dot (see CheckDomain).
func ParseHost(host, domain string) (id identity.ID, port uint16, err error) {
	h := stripPort(host)
	h = strings.TrimSuffix(h, ".")
	if h == "" || domain == "" || len(h) < len(domain) ||
		!strings.EqualFold(h[len(h)-len(domain):], domain) {
		return id, 0, fmt.Errorf("%w: %q", ErrForeignHost, trunc(host))
	}
	rest := h[:len(h)-len(domain)]
	if rest == "" {
		return id, 0, fmt.Errorf("%w: %q is the gateway's own domain; use <device-id>.%s", ErrNoDevice, trunc(host), domain)
	}
	if !strings.HasSuffix(rest, ".") {
		// "xexample.test" is not under "example.test".
		return id, 0, fmt.Errorf("%w: %q", ErrForeignHost, trunc(host))
	}
	label := rest[:len(rest)-1]
	if strings.Contains(label, ".") {
		return id, 0, fmt.Errorf("%w: %q has labels left of the device ID", ErrNoDevice, trunc(host))
	}
	port = DefaultHTTPPort
	// z-base-32 has no '-', so a dash can only start the port.
	if i := strings.IndexByte(label, '-'); i >= 0 {
		p := label[i+1:]
		label = label[:i]
		n, perr := strconv.ParseUint(p, 10, 16)
		if perr != nil || n == 0 || p[0] < '1' || p[0] > '9' {
			return id, 0, fmt.Errorf("%w: %q: port %q is not 1-65535", ErrNoDevice, trunc(host), trunc(p))
		}
		port = uint16(n)
	}
	id, err = identity.ParseID(label)
	if err != nil {
		return identity.ID{}, 0, fmt.Errorf("%w: %q: %w", ErrNoDevice, trunc(host), err)
	}
	return id, port, nil
}

// stripPort removes a ":port" suffix (digits only) from host. An IPv6
// literal keeps its brackets and so never matches a domain.
func stripPort(host string) string {
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return host
	}
	for _, c := range host[i+1:] {
		if c < '0' || c > '9' {
			return host
		}
	}
	return host[:i]
}

// CheckDomain validates and normalizes the gateway's domain: a DNS name of
// letters, digits and hyphens, lowercased, with no trailing dot, short
// enough to leave room for a device label (and not a .tunnel name, which
// clients would send to their own socksd).
func CheckDomain(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("domain %q: %s", domain, why)
	}
	if d == "" {
		return bad("empty")
	}
	// A label of up to 52+6 characters and a dot go in front of it.
	if len(d) > 253-60 {
		return bad("too long")
	}
	for _, l := range strings.Split(d, ".") {
		if l == "" || len(l) > 63 {
			return bad("empty or over-long label")
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return bad("label starts or ends with '-'")
		}
		for _, c := range l {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
				return bad(fmt.Sprintf("character %q (want letters, digits, '-' and '.')", c))
			}
		}
	}
	if d == "tunnel" || strings.HasSuffix(d, ".tunnel") {
		return bad("a .tunnel name is resolved by each client's socksd, not by DNS")
	}
	return d, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

package portmap

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// ErrNoGateway: the host has no IPv4 default route through a gateway.
var ErrNoGateway = errors.New("no IPv4 default gateway")

// DefaultGateway returns the gateway of the host's IPv4 default route,
// from /proc/net/route.
func DefaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("reading the routing table: %w", err)
	}
	defer f.Close()
	return parseRoutes(f)
}

// parseRoutes reads /proc/net/route's format: a header line, then per
// route whitespace-separated fields Iface Destination Gateway Flags …,
// addresses as 8 hex digits in host (little-endian) byte order. The
// default route with the gateway flag (0x2) that comes first wins.
func parseRoutes(r io.Reader) (netip.Addr, error) {
	sc := bufio.NewScanner(r)
	sc.Scan() // the header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[1] != "00000000" {
			continue
		}
		gw, err1 := hex.DecodeString(f[2])
		flags, err2 := strconv.ParseUint(f[3], 16, 32)
		if err1 != nil || err2 != nil || len(gw) != 4 {
			continue
		}
		if flags&0x2 == 0 {
			continue // RTF_GATEWAY unset: an on-link default route
		}
		a := netip.AddrFrom4([4]byte{gw[3], gw[2], gw[1], gw[0]})
		if !a.IsUnspecified() {
			return a, nil
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("reading the routing table: %w", err)
	}
	return netip.Addr{}, ErrNoGateway
}

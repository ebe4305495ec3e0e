package portmap

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRoutes(t *testing.T) {
	const table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth1\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n" + // on-link default: no gateway
		"eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
	a, err := parseRoutes(strings.NewReader(table))
	if err != nil || a != netip.MustParseAddr("192.168.1.1") {
		t.Fatalf("parseRoutes = %v, %v; want 192.168.1.1", a, err)
	}
	if _, err := parseRoutes(strings.NewReader("Iface\tDestination\n" + "eth0\tzz\n")); !errors.Is(err, ErrNoGateway) {
		t.Fatalf("no default route: %v, want ErrNoGateway", err)
	}
}

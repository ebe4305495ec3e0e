package limit

import (
	"net"
	"net/netip"
	"testing"
)

func TestSourceOf(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.UDPAddr{IP: net.ParseIP("192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.7"), Port: 1}, "192.0.2.7/32"},
		{&net.UDPAddr{IP: net.ParseIP("2001:db8:1:2:3:4:5:6"), Port: 1}, "2001:db8:1:2::/64"},
		{&net.UDPAddr{IP: net.ParseIP("fe80::1"), Port: 1, Zone: "eth0"}, "fe80::/64"},
		// Another address type: parsed from its string.
		{stringAddr("[2001:db8::9]:443"), "2001:db8::/64"},
		{stringAddr("/run/x.sock"), "invalid Prefix"},
		{&net.UnixAddr{Name: "@", Net: "unix"}, "invalid Prefix"},
		{nil, "invalid Prefix"},
	} {
		if got := SourceOf(tc.addr).String(); got != tc.want {
			t.Errorf("SourceOf(%v) = %s, want %s", tc.addr, got, tc.want)
		}
	}
	if got := SourcePrefix(netip.Addr{}); got.IsValid() {
		t.Errorf("SourcePrefix(zero) = %s, want the zero Prefix", got)
	}
}

type stringAddr string

func (a stringAddr) Network() string { return "test" }
func (a stringAddr) String() string  { return string(a) }

//go:build linux && !386

package transport

import (
	"net"
	"testing"
)

// Zones and indexes come from one read of the interfaces; a miss reads
// them again at most once per zoneRefetch, however many datagrams carry
// an unknown zone, and falls back to the decimal form the net package
// uses.
func TestZoneCache(t *testing.T) {
	fetches := 0
	ifs := []net.Interface{{Index: 1, Name: "lo"}, {Index: 7, Name: "eth0"}}
	z := &zoneCache{fetch: func() ([]net.Interface, error) { fetches++; return ifs, nil }}
	if got := z.scopeID("eth0"); got != 7 {
		t.Fatalf("scopeID(eth0) = %d, want 7", got)
	}
	if got := z.zone(1); got != "lo" {
		t.Fatalf("zone(1) = %q, want lo", got)
	}
	for range 1000 {
		if got := z.zone(9); got != "9" {
			t.Fatalf("zone(9) = %q, want the index in decimal", got)
		}
		if got := z.scopeID("12"); got != 12 {
			t.Fatalf("scopeID(12) = %d, want 12", got)
		}
		if got := z.scopeID("wlan9"); got != 0 {
			t.Fatalf("scopeID of an unknown name = %d, want 0", got)
		}
	}
	if fetches != 1 {
		t.Fatalf("%d reads of the interfaces for 3,002 lookups within %v, want 1", fetches, zoneRefetch)
	}
	// After zoneRefetch a miss reads them again and finds a new interface.
	z.fetched = z.fetched.Add(-zoneRefetch)
	ifs = append(ifs, net.Interface{Index: 9, Name: "wlan9"})
	if got := z.zone(9); got != "wlan9" || fetches != 2 {
		t.Fatalf("zone(9) after a new interface = %q with %d reads, want wlan9 with 2", got, fetches)
	}
}

// The process-wide cache reads this machine's interfaces: loopback's name
// and index map to each other.
func TestZonesLoopback(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback == 0 {
			continue
		}
		if got := zones.scopeID(ifi.Name); got != uint32(ifi.Index) {
			t.Fatalf("scopeID(%s) = %d, want %d", ifi.Name, got, ifi.Index)
		}
		if got := zones.zone(uint32(ifi.Index)); got != ifi.Name {
			t.Fatalf("zone(%d) = %q, want %s", ifi.Index, got, ifi.Name)
		}
		return
	}
	t.Skip("no loopback interface")
}

package portmap

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// runIGD starts Run for port with a gateway that has no PCP or NAT-PMP
// (port unreachable) and r as its UPnP-IGD.
func runIGD(t *testing.T, ctx context.Context, r *igdResponder, port uint16, lifetime time.Duration) (<-chan netip.AddrPort, <-chan error) {
	t.Helper()
	return runConfig(t, ctx, Config{Gateway: closedPort(t), Port: port, Lifetime: lifetime, ssdp: r.ssdpAddr})
}

// UPnP-IGD when PCP and NAT-PMP are refused: found by SSDP, the mapping
// added for this host's address, renewed at half the lease, deleted at
// the end of the context.
func TestUPnPMapRenewDelete(t *testing.T) {
	r := newIGDResponder(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	mapped, done := runIGD(t, ctx, r, 40010, 4*time.Second)
	got := recv(t, mapped, 3*time.Second, "mapping")
	if want := netip.MustParseAddrPort("198.18.7.9:40010"); got != want {
		t.Fatalf("mapped %v, want %v", got, want)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("mapping took %v: PCP's port unreachable should send it to UPnP at once", d)
	}
	searches, calls, leases, _ := r.state()
	if searches != 1 || !slices.Equal(calls, []string{"GetExternalIPAddress", "AddPortMapping"}) || leases["40010"] != "4" {
		t.Fatalf("%d searches, calls %v, leases %v; want 1, the address and one mapping of 4 s", searches, calls, leases)
	}
	time.Sleep(2500 * time.Millisecond)
	if _, calls, _, _ = r.state(); len(calls) != 4 || calls[3] != "AddPortMapping" {
		t.Fatalf("calls after 2.5 s of a 4 s lease: %v, want one renewal", calls)
	}
	cancel()
	if err := recv(t, done, 3*time.Second, "end of Run"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if a := recv(t, mapped, time.Second, "end notice"); a.IsValid() {
		t.Fatalf("OnMapped(%v) at the end, want the zero value", a)
	}
	if _, _, leases, deleted := r.state(); len(leases) != 0 || !slices.Equal(deleted, []string{"40010"}) {
		t.Fatalf("after Run: leases %v, deleted %v; want 40010 deleted", leases, deleted)
	}
}

// A gateway that grants only permanent mappings gets lease 0, and the
// mapping is deleted on exit all the same.
func TestUPnPPermanentOnly(t *testing.T) {
	r := newIGDResponder(t, func(r *igdResponder) { r.permanent = true })
	ctx, cancel := context.WithCancel(context.Background())
	mapped, done := runIGD(t, ctx, r, 40011, 0)
	recv(t, mapped, 3*time.Second, "mapping")
	if _, _, leases, _ := r.state(); leases["40011"] != "0" {
		t.Fatalf("leases %v, want 40011 permanent", leases)
	}
	cancel()
	if err := recv(t, done, 3*time.Second, "end of Run"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, _, leases, deleted := r.state(); len(leases) != 0 || !slices.Equal(deleted, []string{"40011"}) {
		t.Fatalf("after Run: leases %v, deleted %v; want 40011 deleted", leases, deleted)
	}
}

// WANIPConnection:2 with the port taken: AddAnyPortMapping's port is the
// mapping, and the one deleted.
func TestUPnPv2AnyPort(t *testing.T) {
	r := newIGDResponder(t, func(r *igdResponder) {
		r.service = "urn:schemas-upnp-org:service:WANIPConnection:2"
		r.taken = true
	})
	ctx, cancel := context.WithCancel(context.Background())
	mapped, done := runIGD(t, ctx, r, 40012, 0)
	if got, want := recv(t, mapped, 3*time.Second, "mapping"), netip.MustParseAddrPort("198.18.7.9:41012"); got != want {
		t.Fatalf("mapped %v, want %v", got, want)
	}
	cancel()
	if err := recv(t, done, 3*time.Second, "end of Run"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, _, _, deleted := r.state(); !slices.Equal(deleted, []string{"41012"}) {
		t.Fatalf("deleted %v, want 41012", deleted)
	}
}

// No answer to SSDP: three searches over 1.75 s, then nothing.
func TestUPnPSilentBounded(t *testing.T) {
	r := newIGDResponder(t, func(r *igdResponder) { r.silent = true })
	start := time.Now()
	_, done := runIGD(t, context.Background(), r, 40013, 0)
	if err := recv(t, done, 4*time.Second, "end of Run"); !errors.Is(err, ErrNoService) {
		t.Fatalf("Run: %v, want ErrNoService", err)
	}
	if d := time.Since(start); d < 1700*time.Millisecond || d > 3*time.Second {
		t.Fatalf("gave up after %v, want 250+500+1000 ms", d)
	}
	time.Sleep(500 * time.Millisecond)
	if n, calls, _, _ := r.state(); n != tries || len(calls) != 0 {
		t.Fatalf("%d searches and calls %v, want %d and none", n, calls, tries)
	}
}

// A LOCATION on another host than the answerer or the gateway is not
// fetched.
func TestUPnPForeignLocation(t *testing.T) {
	var other *httptest.Server
	r := newIGDResponder(t, func(r *igdResponder) {
		// The same description, served on another loopback address: only
		// the check keeps it from being fetched.
		l, err := net.Listen("tcp4", "127.0.0.2:0")
		if err != nil {
			t.Skipf("no 127.0.0.2: %v", err)
		}
		other = &httptest.Server{Listener: l, Config: &http.Server{Handler: http.HandlerFunc(r.serveHTTP)}}
		other.Start()
		t.Cleanup(other.Close)
		r.location = other.URL + "/rootDesc.xml"
	})
	_, done := runIGD(t, context.Background(), r, 40014, 0)
	err := recv(t, done, 4*time.Second, "end of Run")
	if !errors.Is(err, ErrNoService) || !strings.Contains(err.Error(), errForeignLocation.Error()) {
		t.Fatalf("Run: %v, want ErrNoService for a description on another host", err)
	}
	r.mu.Lock()
	fetches := r.fetches
	r.mu.Unlock()
	if n, calls, _, _ := r.state(); n != tries || len(calls) != 0 || fetches != 0 {
		t.Fatalf("%d searches, %d fetches, calls %v; want %d, none, none", n, fetches, calls, tries)
	}
}

// A control URL on another host than the description's is not called.
func TestUPnPForeignControlURL(t *testing.T) {
	r := newIGDResponder(t)
	r.desc = []byte(`<root><device><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>` +
		`<controlURL>` + strings.Replace(r.http.URL, "127.0.0.1", "127.0.0.2", 1) + `/ctl/IPConn</controlURL></service></serviceList></device></root>`)
	_, done := runIGD(t, context.Background(), r, 40015, 0)
	err := recv(t, done, 3*time.Second, "end of Run")
	if !errors.Is(err, errForeignLocation) {
		t.Fatalf("Run: %v, want errForeignLocation", err)
	}
}

// A description over descMaxLen is refused, not read whole.
func TestUPnPHugeDescription(t *testing.T) {
	r := newIGDResponder(t, func(r *igdResponder) { r.huge = true })
	_, done := runIGD(t, context.Background(), r, 40016, 0)
	err := recv(t, done, 3*time.Second, "end of Run")
	if !errors.Is(err, errTooLarge) {
		t.Fatalf("Run: %v, want errTooLarge", err)
	}
	time.Sleep(100 * time.Millisecond)
	r.mu.Lock()
	written := r.written
	r.mu.Unlock()
	if written > 16<<20 {
		t.Fatalf("%d bytes of a 64 MiB description sent before the client hung up, want it cut after %d", written, descMaxLen)
	}
	if _, calls, _, _ := r.state(); len(calls) != 0 {
		t.Fatalf("calls %v after a refused description", calls)
	}
}

// A refusal of the mapping is a *ResultError with the UPnP error code.
func TestUPnPRefused(t *testing.T) {
	r := newIGDResponder(t)
	r.public = "not an address"
	_, done := runIGD(t, context.Background(), r, 40017, 0)
	if err := recv(t, done, 3*time.Second, "end of Run"); err == nil || !strings.Contains(err.Error(), "not an IPv4 address") {
		t.Fatalf("Run: %v, want the external address refused", err)
	}
	r = newIGDResponder(t, func(r *igdResponder) { r.taken = true })
	_, done = runIGD(t, context.Background(), r, 40018, 0)
	var re *ResultError
	if err := recv(t, done, 3*time.Second, "end of Run"); !errors.As(err, &re) || re.Code != upnpConflict || re.Protocol != "UPnP-IGD" {
		t.Fatalf("Run: %v, want UPnP-IGD error %d", err, upnpConflict)
	}
}

func TestParseDescriptionPPP(t *testing.T) {
	svc, ctl, base, err := parseDescription([]byte(`<root><URLBase>http://192.168.1.1:5000/</URLBase><device><deviceList><device><serviceList>
<service><serviceType>urn:schemas-upnp-org:service:WANPPPConnection:1</serviceType><controlURL>/ppp</controlURL></service>
</serviceList></device></deviceList></device></root>`))
	if err != nil || svc != "urn:schemas-upnp-org:service:WANPPPConnection:1" || ctl != "/ppp" || base != "http://192.168.1.1:5000/" {
		t.Fatalf("parseDescription = %q, %q, %q, %v", svc, ctl, base, err)
	}
	if _, _, _, err := parseDescription([]byte(`<root><device></device></root>`)); err == nil {
		t.Fatal("a description without a connection service parsed")
	}
}

// The end of the context ends the SSDP search at once.
func TestUPnPCancelDuringSearch(t *testing.T) {
	r := newIGDResponder(t, func(r *igdResponder) { r.silent = true })
	ctx, cancel := context.WithCancel(context.Background())
	_, done := runIGD(t, ctx, r, 40019, 0)
	time.Sleep(150 * time.Millisecond)
	start := time.Now()
	cancel()
	if err := recv(t, done, time.Second, "end of Run"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("Run took %v to end", d)
	}
	if n, _, _, _ := r.state(); n != 1 {
		t.Fatalf("%d searches, want 1 before the end", n)
	}
}

// A gateway whose HTTP server never answers costs reqTimeout at most, and
// less if the context ends first.
func TestUPnPStalledDescription(t *testing.T) {
	r := newIGDResponder(t, func(r *igdResponder) { r.stall = true })
	start := time.Now()
	_, done := runIGD(t, context.Background(), r, 40020, 0)
	err := recv(t, done, 2*reqTimeout, "end of Run")
	if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("Run: %v, want a timeout", err)
	}
	if d := time.Since(start); d < reqTimeout || d > reqTimeout+time.Second {
		t.Fatalf("gave up after %v, want %v", d, reqTimeout)
	}

	ctx, cancel := context.WithCancel(context.Background())
	_, done = runIGD(t, ctx, r, 40021, 0)
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	cancel()
	if err := recv(t, done, time.Second, "end of Run"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("Run took %v to end", d)
	}
}

package portmap

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// run starts Run against r for port, and returns the addresses OnMapped
// gave (as they come) and Run's result. Its UPnP-IGD searches go to a
// silent listener on loopback, r.ssdp.
func run(t *testing.T, ctx context.Context, r *responder, port uint16, lifetime time.Duration) (<-chan netip.AddrPort, <-chan error) {
	t.Helper()
	r.ssdp = newIGDResponder(t, func(g *igdResponder) { g.silent = true })
	return runConfig(t, ctx, Config{Gateway: r.addr, Port: port, Lifetime: lifetime, ssdp: r.ssdp.ssdpAddr})
}

// runConfig starts Run with cfg, and returns the addresses OnMapped gave
// and Run's result.
func runConfig(t *testing.T, ctx context.Context, cfg Config) (<-chan netip.AddrPort, <-chan error) {
	t.Helper()
	mapped := make(chan netip.AddrPort, 16)
	done := make(chan error, 1)
	cfg.OnMapped = func(a netip.AddrPort) { mapped <- a }
	go func() { done <- Run(ctx, cfg) }()
	return mapped, done
}

func recv[T any](t *testing.T, c <-chan T, within time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(within):
		t.Fatalf("no %s within %v", what, within)
		panic("unreachable")
	}
}

// PCP: granted, renewed at half the lifetime, deleted on the end of the
// context with the same nonce.
func TestPCPMapRenewDelete(t *testing.T) {
	r := newResponder(t, "pcp", func(r *responder) { r.lifetime = 4 }) // renewals every 2 s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mapped, done := run(t, ctx, r, 40000, time.Hour)

	got := recv(t, mapped, 2*time.Second, "mapping")
	if want := netip.MustParseAddrPort("198.18.7.9:40000"); got != want {
		t.Fatalf("mapped %v, want %v (the internal port was asked for)", got, want)
	}
	if n := r.count(); n != 1 {
		t.Fatalf("%d requests for one mapping, want 1", n)
	}
	time.Sleep(4500 * time.Millisecond)
	if n := r.count(); n < 3 || n > 4 {
		t.Fatalf("%d requests after 4.5 s of a 4 s mapping, want 1 + 2 renewals", n)
	}
	cancel()
	if err := recv(t, done, 2*time.Second, "end of Run"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if a := recv(t, mapped, time.Second, "end notice"); a.IsValid() {
		t.Fatalf("OnMapped(%v) at the end, want the zero value", a)
	}
	if l, ok := r.deleted(t, 40000); !ok || l != 0 {
		t.Fatalf("mapping after Run: lifetime %d (known %v), want deleted", l, ok)
	}
	r.mu.Lock()
	first, last := r.requests[0], r.requests[len(r.requests)-1]
	r.mu.Unlock()
	if string(first[24:36]) != string(last[24:36]) {
		t.Fatal("the deletion's nonce is not the mapping's")
	}
	if l := string(last[4:8]); l != "\x00\x00\x00\x00" {
		t.Fatalf("last request's lifetime %x, want 0", l)
	}
	// The renewal asked for the port granted, and the request for the
	// internal one with a client address: loopback, as the socket is.
	if c := netip.AddrFrom16([16]byte(first[8:24])).Unmap(); c != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("client address %v in the request, want 127.0.0.1", c)
	}
}

// A NAT-PMP-only gateway answers PCP with "unsupported version": the
// client switches at once, and deletes the NAT-PMP way.
func TestNATPMPFallback(t *testing.T) {
	r := newResponder(t, "natpmp")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	mapped, done := run(t, ctx, r, 40001, 0)
	got := recv(t, mapped, 2*time.Second, "mapping")
	if want := netip.MustParseAddrPort("198.18.7.9:40001"); got != want {
		t.Fatalf("mapped %v, want %v", got, want)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("fallback took %v, want no waiting for timeouts", d)
	}
	if l, _ := r.mapping(40001); l != uint32(DefaultLifetime/time.Second) {
		t.Fatalf("lifetime %d granted, want the default %v asked", l, DefaultLifetime)
	}
	if n := r.count(); n != 3 {
		t.Fatalf("%d requests, want 3 (PCP, NAT-PMP address, NAT-PMP map)", n)
	}
	cancel()
	if err := recv(t, done, 2*time.Second, "end of Run"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if l, ok := r.deleted(t, 40001); !ok || l != 0 {
		t.Fatalf("mapping after Run: lifetime %d, want deleted", l)
	}
	r.mu.Lock()
	last := r.requests[len(r.requests)-1]
	r.mu.Unlock()
	if last[0] != 0 || last[1] != natpmpOpMapUDP {
		t.Fatalf("deletion %x, want a NAT-PMP map request", last)
	}
}

// A gateway that never answers costs six packets over 3.5 s, and three
// SSDP searches over 1.75 s, then silence.
func TestSilentGatewayBounded(t *testing.T) {
	r := newResponder(t, "silent")
	start := time.Now()
	_, done := run(t, context.Background(), r, 40002, 0)
	err := recv(t, done, 8*time.Second, "end of Run")
	if !errors.Is(err, ErrNoService) {
		t.Fatalf("Run: %v, want ErrNoService", err)
	}
	took := time.Since(start)
	if took < 5200*time.Millisecond || took > 7*time.Second {
		t.Fatalf("discovery gave up after %v, want 3 × (250+500+1000) ms", took)
	}
	time.Sleep(500 * time.Millisecond)
	if n := r.count(); n != 2*tries {
		t.Fatalf("%d packets to a silent gateway, want %d", n, 2*tries)
	}
	if n, _, _, _ := r.ssdp.state(); n != tries {
		t.Fatalf("%d SSDP searches, want %d", n, tries)
	}
}

// A refusal is an error naming the protocol and code; nothing is retried.
func TestRefused(t *testing.T) {
	r := newResponder(t, "refuse")
	_, done := run(t, context.Background(), r, 40003, 0)
	err := recv(t, done, 2*time.Second, "end of Run")
	var re *ResultError
	if !errors.As(err, &re) || re.Protocol != "PCP" || re.Code != refuseCode {
		t.Fatalf("Run: %v, want PCP's result %d", err, refuseCode)
	}
	if n := r.count(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

// Responses for another mapping, truncated ones and noise are ignored;
// the right one that follows counts.
func TestIgnoresForeignResponses(t *testing.T) {
	r := newResponder(t, "pcp", func(r *responder) {
		r.before = func(req []byte) [][]byte {
			other := r.answer(req)
			other[24] ^= 0xff // another nonce
			wrongPort := r.answer(req)
			wrongPort[41]++
			return [][]byte{{}, {2}, []byte("noise"), other[:40], other, wrongPort}
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	mapped, done := run(t, ctx, r, 40004, 0)
	if got := recv(t, mapped, 2*time.Second, "mapping"); got.Port() != 40004 {
		t.Fatalf("mapped %v", got)
	}
	cancel()
	if err := recv(t, done, 2*time.Second, "end of Run"); err != nil {
		t.Fatal(err)
	}
}

// The end of the context ends discovery at once.
func TestCancelDuringDiscovery(t *testing.T) {
	r := newResponder(t, "silent")
	ctx, cancel := context.WithCancel(context.Background())
	_, done := run(t, ctx, r, 40005, 0)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	cancel()
	err := recv(t, done, time.Second, "end of Run")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("Run took %v to end", d)
	}
}

// A gateway whose mapping service is gone between renewals: the mapping
// is reported lost when its lifetime ends.
func TestExpiresUnrenewed(t *testing.T) {
	r := newResponder(t, "pcp", func(r *responder) { r.lifetime = 3 })
	mapped, done := run(t, context.Background(), r, 40006, 0)
	recv(t, mapped, 2*time.Second, "mapping")
	r.mu.Lock()
	r.mode = "silent" // the mode is read under mu once set up
	r.mu.Unlock()
	err := recv(t, done, 10*time.Second, "end of Run")
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("Run: %v, want ErrExpired", err)
	}
	if a := recv(t, mapped, time.Second, "lost notice"); a.IsValid() {
		t.Fatalf("OnMapped(%v), want the zero value", a)
	}
}

func TestBadConfig(t *testing.T) {
	if err := Run(context.Background(), Config{Port: 1}); err == nil || !strings.Contains(err.Error(), "gateway") {
		t.Fatalf("Run without a gateway: %v", err)
	}
}

package transport

import (
	"bytes"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

func testLease(t *testing.T) Lease {
	t.Helper()
	k, _ := identity.Generate()
	ep, _ := NewEndpoint(k.ID())
	return Lease{Endpoint: ep, ID: k.ID(), Device: true, Expires: 1 << 40, Key: LeaseKey{7, 7, 7}}
}

func TestLeaseFrames(t *testing.T) {
	l := testLease(t)
	for _, release := range []bool{false, true} {
		f := appendKeep(nil, l, 42, release)
		if len(f) != keepLen {
			t.Fatalf("keep of %d bytes, want %d", len(f), keepLen)
		}
		k, ok := parseKeep(f)
		want := Keep{Endpoint: l.Endpoint, ID: l.ID, Device: true, Expires: l.Expires, Seq: 42, Release: release}
		if !ok || k != want {
			t.Fatalf("parseKeep = %+v, %v; want %+v", k, ok, want)
		}
		if !frameMACValid(f, l.Key[:]) || frameMACValid(f, []byte{8}) {
			t.Fatal("keep MAC: the lease's key must check it and no other")
		}
		for i := range f {
			bad := bytes.Clone(f)
			bad[i] ^= 0x10
			if k, ok := parseKeep(bad); ok && k != want && frameMACValid(bad, l.Key[:]) {
				t.Fatalf("keep with byte %d changed still checks", i)
			}
		}
	}
	if _, ok := parseKeep(appendKeep(nil, l, 1, false)[:keepLen-1]); ok {
		t.Fatal("a short keep parsed")
	}
	// Keys: one per relay secret and lease.
	secret := []byte("secret")
	if leaseKeyOf(secret, l) != leaseKeyOf(secret, l) || leaseKeyOf(secret, l) == leaseKeyOf([]byte("other"), l) {
		t.Fatal("lease keys")
	}
	other := l
	other.Expires++
	if leaseKeyOf(secret, l) == leaseKeyOf(secret, other) {
		t.Fatal("two leases of one endpoint share a key")
	}

	kept := appendKept(nil, l.Endpoint, 9, l.Key)
	if len(kept) != keptLen || keptLen >= keepLen {
		t.Fatalf("kept of %d bytes, keep %d: the answer must be the shorter", len(kept), keepLen)
	}
	if seq, ok := parseKept(kept, l); !ok || seq != 9 {
		t.Fatalf("parseKept = %d, %v", seq, ok)
	}
	wrongKey, wrongEP := l, l
	wrongKey.Key[0]++
	wrongEP.Endpoint++
	for _, bad := range []Lease{wrongKey, wrongEP} {
		if _, ok := parseKept(kept, bad); ok {
			t.Fatalf("kept taken for lease %+v", bad)
		}
	}
}

// leaseRelay is a relay with a keep handler, and a raw socket to talk to
// it.
type leaseRelay struct {
	relay *Relay
	key   *identity.Key
	taken atomic.Int64
	take  atomic.Bool
	raw   *net.UDPConn
}

func startLeaseRelay(t *testing.T) *leaseRelay {
	t.Helper()
	lr := &leaseRelay{}
	lr.take.Store(true)
	var err error
	if lr.relay, err = ListenRelay("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	lr.key, _ = identity.Generate()
	lr.relay.SetKeepHandler(func(k Keep, from netip.AddrPort) bool {
		lr.taken.Add(1)
		return lr.take.Load()
	})
	if _, err := lr.relay.Listen(lr.key, ListenConfig{}); err != nil {
		t.Fatal(err)
	}
	if lr.raw, err = net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lr.raw.Close(); lr.relay.Close() })
	return lr
}

func (lr *leaseRelay) send(t *testing.T, b []byte) {
	t.Helper()
	if _, err := lr.raw.WriteToUDPAddrPort(b, lr.relay.Socket().LocalAddr()); err != nil {
		t.Fatal(err)
	}
}

// answer returns the next datagram the raw socket gets within d, or nil.
func (lr *leaseRelay) answer(d time.Duration) []byte {
	buf := make([]byte, 2048)
	_ = lr.raw.SetReadDeadline(time.Now().Add(d))
	n, _, err := lr.raw.ReadFromUDPAddrPort(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestRelayAnswersKeeps(t *testing.T) {
	lr := startLeaseRelay(t)
	k, _ := identity.Generate()
	ep, _ := NewEndpoint(k.ID())
	l, ok := lr.relay.Lease(k.ID(), ep, true, time.Minute)
	if !ok {
		t.Fatal("no lease from a listening relay with a keep handler")
	}
	lr.send(t, appendKeep(nil, l, 1, false))
	if seq, ok := parseKept(lr.answer(2*time.Second), l); !ok || seq != 1 {
		t.Fatalf("answer to keep 1: %d, %v", seq, ok)
	}
	// The handler refuses: no answer.
	lr.take.Store(false)
	lr.send(t, appendKeep(nil, l, 2, false))
	if b := lr.answer(300 * time.Millisecond); b != nil {
		t.Fatalf("a refused keep was answered: %x", b)
	}
	if lr.taken.Load() != 2 {
		t.Fatalf("handler asked %d times, want 2", lr.taken.Load())
	}
}

// Strangers: keeps the relay did not lease cost one parse and one HMAC
// each, reach no handler, and get no answer.
func TestRelayKeepStrangers(t *testing.T) {
	lr := startLeaseRelay(t)
	k, _ := identity.Generate()
	ep, _ := NewEndpoint(k.ID())
	real, _ := lr.relay.Lease(k.ID(), ep, true, time.Minute)
	expired, _ := lr.relay.Lease(k.ID(), ep, true, -time.Minute)
	forged := real
	forged.Key = LeaseKey{1, 2, 3}
	otherID := real // the relay's key, another ID: the MAC does not hold
	otherID.ID[0] ^= 1
	longer := real
	longer.Expires += 3600 // a stranger extending a lease it saw
	frames := [][]byte{
		appendKeep(nil, forged, 1, false),
		appendKeep(nil, expired, 1, false),
		appendKeep(nil, otherID, 1, false),
		appendKeep(nil, longer, 1, false),
		appendKeep(nil, real, 1, false)[:keepLen-1],
		append(appendKeep(nil, real, 1, false), 0),
		{frameKeep},
	}
	before := runtime.NumGoroutine()
	dropped := lr.relay.Dropped.Load()
	const rounds = 200
	for range rounds {
		for _, f := range frames {
			lr.send(t, f)
		}
	}
	if b := lr.answer(500 * time.Millisecond); b != nil {
		t.Fatalf("a stranger's keep was answered: %x", b)
	}
	if n := lr.taken.Load(); n != 0 {
		t.Fatalf("the handler saw %d keeps of strangers", n)
	}
	want := dropped + rounds*uint64(len(frames))
	deadline := time.Now().Add(5 * time.Second)
	for lr.relay.Dropped.Load() != want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := lr.relay.Dropped.Load(); got != want {
		t.Fatalf("relay dropped %d keeps, want %d", got-dropped, want-dropped)
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines %d → %d", before, after)
	}
	lr.send(t, appendKeep(nil, real, 1, false))
	if _, ok := parseKept(lr.answer(2*time.Second), real); !ok {
		t.Fatal("the real lease's keep got no answer after the flood")
	}
}

// A relay that has not listened, or has no handler, leases nothing and
// answers no keep.
func TestRelayWithoutLeases(t *testing.T) {
	r, err := ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	k, _ := identity.Generate()
	if _, ok := r.Lease(k.ID(), 1, true, time.Minute); ok {
		t.Fatal("lease before Listen")
	}
	if _, err := r.Listen(k, ListenConfig{}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Lease(k.ID(), 1, true, time.Minute); ok {
		t.Fatal("lease without a keep handler")
	}
}

// The node takes a kept frame only from the relay it keeps its lease at,
// and only with the lease's MAC.
func TestNodeTakesKeptFromItsRelay(t *testing.T) {
	k, _ := identity.Generate()
	n, err := NewNode(k, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	relay, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	other, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	l := Lease{Endpoint: n.Endpoint(), ID: k.ID(), Device: true, Expires: 1 << 40, Key: LeaseKey{5}}
	relayAddr := relay.LocalAddr().(*net.UDPAddr).AddrPort()
	if err := n.KeepLease(relayAddr, l, 3); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = relay.SetReadDeadline(time.Now().Add(2 * time.Second))
	m, from, err := relay.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := parseKeep(buf[:m])
	if !ok || got.Seq != 3 || got.Endpoint != l.Endpoint || !frameMACValid(buf[:m], l.Key[:]) {
		t.Fatalf("the relay got %+v, %v", got, ok)
	}
	wrongKey := l
	wrongKey.Key[0]++
	other.WriteToUDPAddrPort(appendKept(nil, l.Endpoint, 3, l.Key), from)        // another address
	relay.WriteToUDPAddrPort(appendKept(nil, l.Endpoint, 3, wrongKey.Key), from) // another key
	relay.WriteToUDPAddrPort(appendKept(nil, l.Endpoint+1, 3, l.Key), from)      // another endpoint
	select {
	case seq := <-n.Kept():
		t.Fatalf("kept %d taken from a stranger", seq)
	case <-time.After(300 * time.Millisecond):
	}
	relay.WriteToUDPAddrPort(appendKept(nil, l.Endpoint, 3, l.Key), from)
	select {
	case seq := <-n.Kept():
		if seq != 3 {
			t.Fatalf("kept %d, want 3", seq)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the relay's kept frame was not delivered")
	}
}

package transport

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// heldSender is a socket whose sender waits before its first write until
// released, so that runs queue up behind it; it counts the writes.
type heldSender struct {
	s       *Socket
	writes  atomic.Int32
	release chan struct{}
	holding chan struct{}
}

func newHeldSender(t *testing.T) *heldSender {
	t.Helper()
	s, err := ListenSocket("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldSender{s: s, release: make(chan struct{}), holding: make(chan struct{})}
	// Set before anything is queued: the sender reads it after taking a
	// run from the channel.
	s.tx.beforeWrite = func() {
		if h.writes.Add(1) == 1 {
			close(h.holding)
			<-h.release
		}
	}
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
		s.Close()
	})
	return h
}

func listenPlainUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTxQueueMergesAndKeepsOrder: runs that queue up while the sender
// writes leave as one write, and a datagram sent after them (a ping) is
// written after them, not before.
func TestTxQueueMergesAndKeepsOrder(t *testing.T) {
	h := newHeldSender(t)
	rx := listenPlainUDP(t)
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()

	const seg = 100
	hdr := []byte{frameDirect}
	var want [][]byte
	packets := func(run int) []byte {
		var b []byte
		for i := range 3 {
			p := bytes.Repeat([]byte{0x40 | byte(run*3+i)}, seg)
			b = append(b, p...)
			want = append(want, append(append([]byte{}, hdr...), p...))
		}
		return b
	}
	h.s.WriteSegments(hdr, packets(0), seg, to)
	select {
	case <-h.holding:
	case <-time.After(5 * time.Second):
		t.Fatal("the sender never took the first run")
	}
	for run := 1; run <= 3; run++ {
		h.s.WriteSegments(hdr, packets(run), seg, to)
	}
	ping := []byte("ping: sent after the runs")
	if err := h.s.WriteTo(ping, to); err != nil {
		t.Fatal(err)
	}
	want = append(want, ping)
	if !h.s.tx.busy() {
		t.Fatal("the sender is not busy with four runs queued or in hand")
	}
	close(h.release)

	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for i, w := range want {
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d of %d: %v", i, len(want), err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: % x…, want % x…", i, buf[:min(n, 4)], w[:4])
		}
	}
	// The first run alone, the three queued runs merged (9 datagrams of
	// one size), then the ping, which has a size of its own.
	if w := h.writes.Load(); w != 3 {
		t.Fatalf("%d writes, want 3", w)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.s.tx.busy() {
		if time.Now().After(deadline) {
			t.Fatalf("still busy after every datagram arrived: %d queued", h.s.tx.queued.Load())
		}
		time.Sleep(time.Millisecond)
	}
	// Idle, a datagram is written at once, not handed over.
	if err := h.s.WriteTo(ping, to); err != nil {
		t.Fatal(err)
	}
	if w := h.writes.Load(); w != 3 {
		t.Fatalf("%d writes through the sender after a datagram sent while idle, want still 3", w)
	}
	if n, err := rx.Read(buf); err != nil || !bytes.Equal(buf[:n], ping) {
		t.Fatalf("the datagram sent while idle: %q, %v", buf[:n], err)
	}
}

func TestTxRunMerge(t *testing.T) {
	a := netip.MustParseAddrPort("127.0.0.1:1")
	b := netip.MustParseAddrPort("127.0.0.1:2")
	mk := func(to netip.AddrPort, dgram, k, n int) txRun {
		buf := make([]byte, n, maxRunBytes)
		return txRun{buf: &buf, run: buf, dgram: dgram, k: k, to: to}
	}
	for _, c := range []struct {
		name string
		r, n txRun
		want bool
	}{
		{"same destination and size", mk(a, 1401, 14, 14*1401), mk(a, 1401, 14, 14*1401), true},
		{"the next one ends short", mk(a, 1401, 14, 14*1401), mk(a, 1401, 2, 1401+60), true},
		{"another destination", mk(a, 1401, 14, 14*1401), mk(b, 1401, 14, 14*1401), false},
		{"another size", mk(a, 1401, 14, 14*1401), mk(a, 1201, 14, 14*1201), false},
		{"the first one ends short", mk(a, 1401, 2, 1401+60), mk(a, 1401, 2, 2*1401), false},
		{"past the kernel's 64 datagrams", mk(a, 100, 40, 4000), mk(a, 100, 25, 2500), false},
		{"past 64 KiB", mk(a, 1401, 40, 40*1401), mk(a, 1401, 10, 10*1401), false},
	} {
		r := c.r
		if got := r.merge(c.n); got != c.want {
			t.Errorf("%s: merge = %v, want %v", c.name, got, c.want)
			continue
		}
		if c.want && (r.k != c.r.k+c.n.k || len(r.run) != len(c.r.run)+len(c.n.run)) {
			t.Errorf("%s: merged into %d datagrams, %d bytes", c.name, r.k, len(r.run))
		}
	}
}

// TestTxQueueClose: closing a socket whose sender holds queued runs
// neither hangs nor leaks (goleak, TestMain), and sends after it return at
// once, also with the queue full.
func TestTxQueueClose(t *testing.T) {
	h := newHeldSender(t)
	rx := listenPlainUDP(t)
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()
	two := bytes.Repeat([]byte{0x40}, 200)
	h.s.WriteSegments(nil, two, 100, to)
	<-h.holding
	for range txQueueLen {
		h.s.WriteSegments(nil, two, 100, to)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		close(h.release)
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.s.Close()
		for range 2 * txQueueLen {
			h.s.WriteSegments(nil, two, 100, to)
			_ = h.s.WriteTo(two[:1], to)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		panic(fmt.Sprintf("Close or a send after it hung (%d queued)", h.s.tx.queued.Load()))
	}
}

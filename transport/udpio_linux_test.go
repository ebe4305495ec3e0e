//go:build linux && !386

package transport

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

func udpIOPair(t *testing.T, network, addr string) (*net.UDPConn, *udpIO, *net.UDPConn, *udpIO) {
	t.Helper()
	open := func() (*net.UDPConn, *udpIO) {
		c, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		if err != nil {
			t.Skipf("listen %s %s: %v", network, addr, err)
		}
		t.Cleanup(func() { c.Close() })
		u, err := newUDPIO(c)
		if err != nil {
			t.Fatal(err)
		}
		return c, u
	}
	a, au := open()
	b, bu := open()
	return a, au, b, bu
}

func localPort(c *net.UDPConn) uint16 { return c.LocalAddr().(*net.UDPAddr).AddrPort().Port() }

// One datagram each way between IPv4 sockets, the second sent while the
// reader already waits in the poller: bytes, sender and segment size come
// out as ReadMsgUDPAddrPort gives them.
func TestUDPIOSendReceive(t *testing.T) {
	a, au, b, bu := udpIOPair(t, "udp4", "127.0.0.1:0")
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), localPort(b))
	if err := au.send([]byte("hello"), 0, to); err != nil {
		t.Fatal(err)
	}
	rd := bu.reader()
	buf, oob := make([]byte, 2048), make([]byte, groOOBSize)
	n, seg, from, err := rd.readGRO(buf, oob)
	if err != nil {
		t.Fatal(err)
	}
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), localPort(a))
	if string(buf[:n]) != "hello" || seg != n || from != want {
		t.Fatalf("read %q seg %d from %v, want %q seg %d from %v", buf[:n], seg, from, "hello", n, want)
	}

	got := make(chan string, 1)
	go func() {
		n, _, _, err := rd.readGRO(buf, oob)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(buf[:n])
	}()
	time.Sleep(20 * time.Millisecond) // let the reader park on EAGAIN
	if err := au.send([]byte("again"), 0, to); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "again" {
			t.Fatalf("second read: %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a reader waiting in the poller never woke")
	}
}

// A GSO send leaves as datagrams of the segment size (the last shorter),
// which a GRO reader gets back with their boundaries.
func TestUDPIOSegments(t *testing.T) {
	_, au, b, bu := udpIOPair(t, "udp4", "127.0.0.1:0")
	if !enableGRO(b) {
		t.Skip("no UDP GRO on this kernel")
	}
	const seg, k, last = 1000, 5, 300
	payload := make([]byte, seg*k+last)
	for i := range payload {
		payload[i] = byte(i / seg)
	}
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), localPort(b))
	if err := au.send(payload, seg, to); err != nil {
		if gsoUnsupported(err) {
			t.Skipf("no UDP GSO: %v", err)
		}
		t.Fatal(err)
	}
	rd := bu.reader()
	buf, oob := make([]byte, 1<<16), make([]byte, groOOBSize)
	var got [][]byte
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	for total := 0; total < len(payload); {
		n, s, _, err := rd.readGRO(buf, oob)
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
		for off := 0; off < n; off += s {
			got = append(got, append([]byte(nil), buf[off:min(off+s, n)]...))
		}
		total += n
	}
	if len(got) != k+1 {
		t.Fatalf("%d datagrams, want %d", len(got), k+1)
	}
	for i, d := range got {
		if want := payload[i*seg : min((i+1)*seg, len(payload))]; !bytes.Equal(d, want) {
			t.Fatalf("datagram %d: %d bytes starting %d, want %d starting %d", i, len(d), d[0], len(want), want[0])
		}
	}
}

// An IPv4 socket refuses an IPv6 destination with a clear error and takes
// a v4-mapped one; a dual-stack socket sends to IPv4 and reads its senders
// as v4-mapped addresses, as the net package does.
func TestUDPIOFamilies(t *testing.T) {
	a, au, b, _ := udpIOPair(t, "udp4", "127.0.0.1:0")
	err := au.send([]byte("x"), 0, netip.MustParseAddrPort("[::1]:9"))
	if !errors.Is(err, syscall.EAFNOSUPPORT) {
		t.Fatalf("IPv6 destination from an IPv4 socket: %v, want EAFNOSUPPORT", err)
	}
	mapped := netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), localPort(b))
	if err := au.send([]byte("m"), 0, mapped); err != nil {
		t.Fatalf("v4-mapped destination from an IPv4 socket: %v", err)
	}
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 16)
	if n, from, err := b.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "m" || from.Port() != localPort(a) {
		t.Fatalf("read %q from %v: %v", buf[:n], from, err)
	}

	d, err := net.ListenUDP("udp", &net.UDPAddr{}) // wildcard: dual-stack where IPv6 is on
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	du, err := newUDPIO(d)
	if err != nil {
		t.Fatal(err)
	}
	if du.dom != syscall.AF_INET6 {
		t.Skip("no dual-stack socket here (IPv6 off)")
	}
	if err := du.send([]byte("d"), 0, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), localPort(b))); err != nil {
		t.Fatalf("IPv4 destination from a dual-stack socket: %v", err)
	}
	if n, from, err := b.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "d" || from.Port() != localPort(d) {
		t.Fatalf("read %q from %v: %v", buf[:n], from, err)
	}
	if _, err := a.WriteToUDPAddrPort([]byte("r"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), localPort(d))); err != nil {
		t.Fatal(err)
	}
	_ = d.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, from, err := du.reader().readGRO(buf, make([]byte, groOOBSize))
	want := netip.AddrPortFrom(netip.MustParseAddr("::ffff:127.0.0.1"), localPort(a))
	if err != nil || string(buf[:n]) != "r" || from != want {
		t.Fatalf("dual-stack read %q from %v (%v), want from %v", buf[:n], from, err, want)
	}
}

// Closing the socket ends a read waiting in the poller with net.ErrClosed,
// which is how Socket's reader knows to stop, and fails later sends alike.
func TestUDPIOClosed(t *testing.T) {
	_, _, b, bu := udpIOPair(t, "udp4", "127.0.0.1:0")
	done := make(chan error, 1)
	go func() {
		_, _, _, err := bu.reader().readGRO(make([]byte, 64), make([]byte, groOOBSize))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	b.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read on a closed socket: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("closing the socket did not end the read")
	}
	if err := bu.send([]byte("x"), 0, netip.MustParseAddrPort("127.0.0.1:9")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("send on a closed socket: %v, want net.ErrClosed", err)
	}
}

// The data path's sends allocate nothing: the argument block is pooled.
func TestUDPIOSendAllocs(t *testing.T) {
	_, au, b, _ := udpIOPair(t, "udp4", "127.0.0.1:0")
	to := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), localPort(b))
	run := make([]byte, 4*1200)
	if n := testing.AllocsPerRun(200, func() { _ = au.send(run, 1200, to) }); n > 0 {
		t.Fatalf("%.1f allocations per GSO send, want 0", n)
	}
	if n := testing.AllocsPerRun(200, func() { _ = au.send(run[:60], 0, to) }); n > 0 {
		t.Fatalf("%.1f allocations per send, want 0", n)
	}
}

package transport

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

func TestEndpointAddr(t *testing.T) {
	for _, ep := range []Endpoint{1, 0xdeadbeefcafef00d, testEndpoint()} {
		got, ok := AddrEndpoint(EndpointAddr(ep))
		if !ok || got != ep {
			t.Fatalf("round trip of %v: %v %v", ep, got, ok)
		}
	}
	a := EndpointAddr(7)
	if !a.IP.Equal(net.ParseIP("100::7")) || a.Port != 1 {
		t.Fatalf("EndpointAddr(7) = %v, want [100::7]:1", a)
	}
	for _, a := range []net.Addr{
		&net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 1},
		&net.UDPAddr{IP: net.ParseIP("100::7"), Port: 2},
		&net.UDPAddr{IP: net.ParseIP("100::"), Port: 1}, // Endpoint 0
		&net.UDPAddr{IP: net.ParseIP("100:0:0:1::7"), Port: 1},
		&net.UDPAddr{IP: net.ParseIP("101::7"), Port: 1},
		&net.TCPAddr{IP: net.ParseIP("100::7"), Port: 1},
		nil,
	} {
		if ep, ok := AddrEndpoint(a); ok {
			t.Errorf("AddrEndpoint(%v) = %v, want none", a, ep)
		}
	}
}

type sent struct {
	ep  Endpoint
	b   []byte
	seg int
}

// quic-go hands a run of packets with a segment-size control message; the
// conn passes the run and the size on, and a plain write as one packet.
func TestInnerConnWrites(t *testing.T) {
	sock, err := ListenSocket("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	var got []sent
	c, err := newInnerConn(sock, 1, func(ep Endpoint, b []byte, seg int) {
		got = append(got, sent{ep, bytes.Clone(b), seg})
	})
	if err != nil {
		t.Fatal(err)
	}
	run := bytes.Repeat([]byte{0x40}, 3*1200+100)
	if n, _, err := c.WriteMsgUDP(run, segmentOOB(1200), EndpointAddr(9)); err != nil || n != len(run) {
		t.Fatalf("WriteMsgUDP: %d %v", n, err)
	}
	if n, err := c.WriteTo(run[:500], EndpointAddr(9)); err != nil || n != 500 {
		t.Fatalf("WriteTo: %d %v", n, err)
	}
	// Not an Endpoint: dropped without an error, which would close quic-go's
	// connection.
	if _, err := c.WriteTo(run[:500], &net.UDPAddr{IP: net.ParseIP("127.0.0.1"), Port: 9}); err != nil {
		t.Fatal(err)
	}
	want := []sent{{9, run, segmentOrWhole(1200, len(run))}, {9, run[:500], 500}}
	if len(got) != len(want) {
		t.Fatalf("sent %d writes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].ep != want[i].ep || got[i].seg != want[i].seg || !bytes.Equal(got[i].b, want[i].b) {
			t.Errorf("write %d: ep %v seg %d len %d, want ep %v seg %d len %d", i,
				got[i].ep, got[i].seg, len(got[i].b), want[i].ep, want[i].seg, len(want[i].b))
		}
	}
	c.Close()
	if _, err := c.WriteTo(run[:10], EndpointAddr(9)); err == nil {
		t.Fatal("write after close succeeded")
	}
}

// segmentOrWhole is the segment size WriteMsgUDP passes on: the asked one
// where this system segments, the whole run where quic-go never does.
func segmentOrWhole(seg, n int) int {
	if segmentSize(segmentOOB(seg)) == seg {
		return seg
	}
	return n
}

func segmentOOB(seg int) []byte {
	if groOOBSize == 0 {
		return nil // no GSO on this system
	}
	return gsoOOB(seg)
}

func TestInnerConnReadBatch(t *testing.T) {
	sock, err := ListenSocket("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	c, err := newInnerConn(sock, 1, func(Endpoint, []byte, int) {})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		bp := packetBufs.Get().(*[]byte)
		(*bp)[0] = byte(i)
		c.deliver(bp, 100+i, EndpointAddr(Endpoint(10+i)))
	}
	ms := make([]ipv4.Message, 3)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	for round, want := range []int{3, 2} {
		n, err := c.ReadBatch(ms, 0)
		if err != nil || n != want {
			t.Fatalf("round %d: %d packets, %v; want %d", round, n, err, want)
		}
		for i := range n {
			k := round*3 + i
			if ms[i].N != 100+k || ms[i].Buffers[0][0] != byte(k) {
				t.Errorf("packet %d: %d bytes starting %d", k, ms[i].N, ms[i].Buffers[0][0])
			}
			if ep, _ := AddrEndpoint(ms[i].Addr); ep != Endpoint(10+k) {
				t.Errorf("packet %d from %v", k, ms[i].Addr)
			}
		}
	}
	// Empty queue: the read waits, and honours the deadline.
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	if n, err := c.ReadBatch(ms, 0); n != 0 || err == nil {
		t.Fatalf("empty queue: %d, %v", n, err)
	}
	c.Close()
}

// WriteSegments frames every segment, the short last one included, and
// splits runs longer than one GSO write allows.
func TestWriteSegments(t *testing.T) {
	sock, err := ListenSocket("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	_ = rx.SetReadBuffer(4 << 20)
	const seg, count = 1000, maxBatch + 10
	run := make([]byte, 0, seg*count)
	for i := range count {
		last := seg
		if i == count-1 {
			last = 77
		}
		p := bytes.Repeat([]byte{byte(i)}, last)
		binary.BigEndian.PutUint16(p, uint16(i))
		run = append(run, p...)
	}
	hdr := []byte{frameDirect}
	sock.WriteSegments(hdr, run, seg, rx.LocalAddr().(*net.UDPAddr).AddrPort())
	buf := make([]byte, 2048)
	for i := range count {
		_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := rx.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		want := 1 + seg
		if i == count-1 {
			want = 1 + 77
		}
		if n != want || buf[0] != frameDirect || binary.BigEndian.Uint16(buf[1:]) != uint16(i) || buf[n-1] != byte(i) {
			t.Fatalf("datagram %d: %d bytes %x…, want %d bytes for segment %d", i, n, buf[:min(n, 4)], want, i)
		}
	}
}

// The relay forwards a run in place: consecutive frames to one Endpoint
// leave together, each with the sender's Endpoint stamped; a frame to an
// Endpoint not attached gets a gone frame back; garbage in the middle is
// dropped without losing its neighbours.
func TestRelayForwardsRun(t *testing.T) {
	r, err := ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	sender, a, b := listen(), listen(), listen()
	addrOf := func(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }
	const epS, epA, epB, epAbsent = Endpoint(100), Endpoint(101), Endpoint(102), Endpoint(103)
	r.Attach(epS, addrOf(sender))
	r.Attach(epA, addrOf(a))
	r.Attach(epB, addrOf(b))
	const seg = 64
	frame := func(typ byte, dst Endpoint, tag byte) []byte {
		f := bytes.Repeat([]byte{tag}, seg)
		f[0] = typ
		putEP(f, dst)
		return f
	}
	var run []byte
	for _, f := range [][]byte{
		frame(frameToRelay, epA, 1), frame(frameToRelay, epA, 2), frame(frameToRelay, epB, 3),
		frame(frameGone, epA, 4), // not a frame a node sends: dropped
		frame(frameToRelay, epA, 5), frame(frameToRelay, epAbsent, 6),
		frame(frameToRelay, epB, 7)[:20], // short last datagram of a GRO read
	} {
		run = append(run, f...)
	}
	r.forward(run, seg, addrOf(sender))
	expect := func(c *net.UDPConn, tags ...byte) {
		t.Helper()
		buf := make([]byte, 2048)
		for _, tag := range tags {
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("waiting for frame %d: %v", tag, err)
			}
			if tag == 6 {
				if n != frameHeaderLen || buf[0] != frameGone || Endpoint(binary.BigEndian.Uint64(buf[1:9])) != epAbsent {
					t.Fatalf("want a gone frame for %v, got %x", epAbsent, buf[:n])
				}
				continue
			}
			if n < frameHeaderLen || buf[n-1] != tag {
				t.Fatalf("got %d bytes ending %d, want frame %d", n, buf[n-1], tag)
			}
			if buf[0] != frameFromRelay || Endpoint(binary.BigEndian.Uint64(buf[1:9])) != epS {
				t.Fatalf("frame %d: header %x, want fromRelay from %v", tag, buf[:9], epS)
			}
		}
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if n, _, err := c.ReadFromUDPAddrPort(buf); err == nil {
			t.Fatalf("unexpected datagram of %d bytes", n)
		}
	}
	expect(a, 1, 2, 5)
	expect(b, 3, 7)
	expect(sender, 6)
	if got := r.Forwarded.Load(); got != 5 {
		t.Errorf("forwarded %d, want 5", got)
	}
	if got := r.Dropped.Load(); got != 2 {
		t.Errorf("dropped %d, want 2", got)
	}
}

// A destination a GSO write was too big for gets plain writes of
// datagrams that large for a while, then GSO again; smaller datagrams keep
// GSO.
func TestSmallPathExpires(t *testing.T) {
	sock, err := ListenSocket("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	a, b := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:1")
	if sock.tooBig(a, 1401) {
		t.Fatal("small before any refusal")
	}
	sock.markSmallPath(a, 1401)
	if !sock.tooBig(a, 1401) || !sock.tooBig(a, 1500) || sock.tooBig(b, 1401) {
		t.Fatal("the refusal must count for its destination only, and for datagrams as large")
	}
	if sock.tooBig(a, 715) {
		t.Fatal("a refusal of 1401-byte datagrams counts for 715-byte ones")
	}
	sock.markSmallPath(a, 1500) // a larger refusal keeps the smaller size
	if !sock.tooBig(a, 1401) {
		t.Fatal("a later, larger refusal raised the size")
	}
	sock.smallMu.Lock()
	sock.small[a] = smallPath{until: time.Now().Add(-time.Second), size: 1401}
	sock.smallMu.Unlock()
	if sock.tooBig(a, 1401) || sock.nSmall.Load() != 0 {
		t.Fatal("an expired refusal still counts")
	}
}

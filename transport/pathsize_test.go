package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sizeOf reads what n knows of the size of its paths to ep.
func sizeOf(n *Node, ep Endpoint) (direct, relay sizeState) {
	n.pathMu.RLock()
	p := n.paths[ep]
	n.pathMu.RUnlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sizeDirect, p.sizeRelay
}

func TestSizeStateSchedule(t *testing.T) {
	to := netip.MustParseAddrPort("192.0.2.1:7")
	t0 := time.Unix(1000, 0)
	// round runs the schedule from at until a round of probes goes out,
	// checking the fragment decision on the way; it returns the round's
	// txids and when it went.
	round := func(p *path, s *sizeState, at time.Time, wantFrag bool) (padded, unpadded uint64, when time.Time) {
		t.Helper()
		for range 8 * int(sizeRecheck/sizeRetry) {
			pl := p.sizeFor(s, to, at)
			frag, pd, up := pl.sz == sendFragments, pl.padded, pl.unpadded
			if frag != wantFrag {
				t.Fatalf("at +%v: fragments %v, want %v", at.Sub(t0), frag, wantFrag)
			}
			if pd != 0 {
				if up == 0 || up == pd {
					t.Fatalf("round with txids %x and %x", pd, up)
				}
				return pd, up, at
			}
			at = at.Add(sizeRetry / 4)
		}
		t.Fatal("no round within two rechecks")
		return 0, 0, at
	}

	t.Run("whole", func(t *testing.T) {
		p := newPath(1, nil)
		s := &p.sizeRelay
		pd, up, at := round(p, s, t0, false)
		if again := p.sizeFor(s, to, at.Add(sizeRetry/2)).padded; again != 0 {
			t.Fatal("a second round before sizeRetry")
		}
		p.sizeAcked(pd+2, true, at) // not its txid
		p.sizeAcked(pd, false, at)  // the direct path's, not the relay's
		if s.verdict != sizeUnknown {
			t.Fatalf("verdict %d after acks that were not the probe's", s.verdict)
		}
		p.sizeAcked(up, true, at) // the unpadded one first: fragments meanwhile
		if frag := p.sizeFor(s, to, at).sz == sendFragments; !frag {
			t.Fatal("whole packets to a peer that joins fragments, on a path not proven")
		}
		p.sizeAcked(pd, true, at)
		if s.verdict != sizeWhole {
			t.Fatalf("verdict %d after the ack, want whole", s.verdict)
		}
		if joins := p.sizeFor(s, to, at).joins; !joins {
			t.Fatal("a peer that answered probes does not join fragments")
		}
		// Nothing more until the recheck.
		if _, _, when := round(p, s, at, false); when.Sub(at) < sizeRecheck {
			t.Fatalf("recheck after %v, want %v", when.Sub(at), sizeRecheck)
		}
	})

	t.Run("small", func(t *testing.T) {
		p := newPath(1, nil)
		s := &p.sizeDirect
		_, up, at := round(p, s, t0, false)
		p.sizeAcked(up, false, at) // only the unpadded probe came back
		for range sizeTries - 1 {
			_, _, at = round(p, s, at, true)
		}
		p.sizeFor(s, to, at.Add(sizeRetry))
		if s.verdict != sizeSmall {
			t.Fatalf("verdict %d, want small", s.verdict)
		}
		// Another address is another path: nothing known there.
		if frag := p.sizeFor(s, netip.MustParseAddrPort("192.0.2.2:7"), at).sz == sendFragments; frag {
			t.Fatal("a new address inherited the old one's verdict")
		}
	})

	t.Run("mute", func(t *testing.T) {
		p := newPath(1, nil)
		s := &p.sizeRelay
		at := t0
		for range sizeTries {
			_, _, at = round(p, s, at, false)
		}
		pl := p.sizeFor(s, to, at.Add(sizeRetry))
		if frag, joins := pl.sz == sendFragments, pl.joins; frag || joins || s.verdict != sizeMute {
			t.Fatalf("verdict %d, fragments %v, joins %v after %d unanswered rounds; want mute, whole, no", s.verdict, frag, joins, sizeTries)
		}
	})

	t.Run("small path becomes whole", func(t *testing.T) {
		p := newPath(1, nil)
		s := &p.sizeRelay
		_, up, at := round(p, s, t0, false)
		p.sizeAcked(up, true, at)
		for range sizeTries - 1 {
			_, _, at = round(p, s, at, true)
		}
		// The recheck's padded probe comes back: whole again, and
		// fragments are sent until then.
		pd, _, at := round(p, s, at, true)
		if s.verdict != sizeSmall {
			t.Fatalf("verdict %d before the recheck, want small", s.verdict)
		}
		p.sizeAcked(pd, true, at)
		if frag := p.sizeFor(s, to, at).sz == sendFragments; frag || s.verdict != sizeWhole {
			t.Fatalf("verdict %d, fragments %v; want whole", s.verdict, frag)
		}
	})
}

// captureSocket is a Socket whose datagrams land in got, and a second one
// to send from.
func captureSocket(t *testing.T) (from *Socket, to netip.AddrPort, got func(n int) [][]byte) {
	t.Helper()
	var mu sync.Mutex
	var frames [][]byte
	rx, err := ListenSocket("127.0.0.1:0", func(run []byte, seg int, _ netip.AddrPort) {
		mu.Lock()
		defer mu.Unlock()
		for len(run) > 0 {
			d := run[:min(seg, len(run))]
			run = run[len(d):]
			frames = append(frames, bytes.Clone(d))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rx.Close() })
	tx, err := ListenSocket("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Close() })
	return tx, rx.LocalAddr(), func(n int) [][]byte {
		t.Helper()
		waitUntil(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(frames) >= n })
		mu.Lock()
		defer mu.Unlock()
		out := frames
		frames = nil
		return out
	}
}

// Runs of packets as quic-go hands them over (every packet seg bytes but
// the last) go out as fragments the receiver joins back into the same
// packets, with a short last packet whole, in the frames counted.
func TestFragmentsRoundTrip(t *testing.T) {
	tx, to, got := captureSocket(t)
	var ids atomic.Uint32
	hdr := []byte{frameDirect}
	for _, tc := range []struct{ seg, n, last int }{
		{innerPacketSize, 1, innerPacketSize},
		{innerPacketSize, 5, innerPacketSize},
		{innerPacketSize, 5, 1300},    // a fragmented short last packet
		{innerPacketSize, 5, 90},      // a last packet that goes whole
		{innerPacketSize, 60, 700},    // more fragments than one GSO write takes
		{innerPacketSize - 1, 4, 800}, // an odd size: halves of two sizes
	} {
		var b []byte
		for i := range tc.n {
			size := tc.seg
			if i == tc.n-1 {
				size = tc.last
			}
			pkt := bytes.Repeat([]byte{byte(0x40 + i)}, size)
			binary.BigEndian.PutUint32(pkt[1:], uint32(i))
			b = append(b, pkt...)
		}
		bytesOut, framesOut := tx.writeFragments(hdr, b, tc.seg, to, &ids)
		frames := got(int(framesOut))
		if len(frames) != int(framesOut) {
			t.Fatalf("seg %d × %d: %d frames arrived, %d counted", tc.seg, tc.n, len(frames), framesOut)
		}
		var r reassembly
		var joined []byte
		var payload uint64
		for _, f := range frames {
			if f[0] != frameDirect {
				t.Fatalf("frame without its header: %x", f[:8])
			}
			p := f[1:]
			payload += uint64(len(p))
			if len(f) > 1+safePayload {
				t.Fatalf("seg %d: a frame of %d bytes, more than the %d every path carries", tc.seg, len(f), 1+safePayload)
			}
			if p[0]&0xc0 != 0 {
				joined = append(joined, p...)
				continue
			}
			if bp, m := r.add(7, p); bp != nil {
				joined = append(joined, (*bp)[:m]...)
				packetBufs.Put(bp)
			}
		}
		if !bytes.Equal(joined, b) {
			t.Fatalf("seg %d × %d (last %d): %d bytes joined, differ from the %d sent", tc.seg, tc.n, tc.last, len(joined), len(b))
		}
		if payload != bytesOut {
			t.Fatalf("seg %d: %d payload bytes arrived, %d counted", tc.seg, payload, bytesOut)
		}
		if n := r.held(); n != 0 {
			t.Fatalf("%d partial packets left", n)
		}
	}
}

// What strangers can make reassembly hold is bounded: a flood of first
// halves keeps at most reassemblySlots buffers, and a packet whose halves
// arrive after the flood still joins.
func TestReassemblyBounded(t *testing.T) {
	var r reassembly
	defer r.close()
	frag := func(id uint32, i byte, data []byte) []byte {
		b := []byte{payloadFragment, 0, 0, 0, 0, i}
		binary.BigEndian.PutUint32(b[1:], id)
		return append(b, data...)
	}
	for id := range uint32(10 * reassemblySlots) {
		if bp, _ := r.add(Endpoint(id%3), frag(id, 0, []byte("first"))); bp != nil {
			t.Fatal("one half made a packet")
		}
		if n := r.held(); n > reassemblySlots {
			t.Fatalf("%d partial packets held, bound %d", n, reassemblySlots)
		}
	}
	for _, bad := range [][]byte{
		frag(1, 2, []byte("x")),                  // no third half
		frag(1, 0, nil),                          // empty
		frag(1, 0, make([]byte, fragMaxPiece+1)), // larger than a half's room
		{payloadFragment, 0, 0},                  // short header
	} {
		if bp, _ := r.add(9, bad); bp != nil {
			t.Fatalf("%x made a packet", bad[:min(len(bad), 8)])
		}
	}
	if bp, _ := r.add(9, frag(77, 1, []byte(" second"))); bp != nil {
		t.Fatal("a second half alone made a packet")
	}
	r.add(9, frag(77, 1, []byte(" second"))) // a duplicate
	bp, m := r.add(9, frag(77, 0, []byte("first")))
	if bp == nil || string((*bp)[:m]) != "first second" {
		t.Fatalf("joined %q, want %q", (*bp)[:m], "first second")
	}
	packetBufs.Put(bp)
	// Another sender's fragment of the same id is another packet.
	if bp, _ := r.add(10, frag(78, 0, []byte("a"))); bp != nil {
		t.Fatal("joined across senders")
	}
	if bp, _ := r.add(11, frag(78, 1, []byte("b"))); bp != nil {
		t.Fatal("joined across senders")
	}
}

// Through the relay: a path that carries whole packets is proven so and
// gets them; one that drops datagrams over 1,300 bytes (a link of a small
// MTU whose ICMP is filtered, so that the kernel never learns to fragment)
// gets fragments, both ways, and the streams do not notice.
func TestRelayPathSize(t *testing.T) {
	for _, small := range []bool{false, true} {
		name := map[bool]string{false: "whole", true: "1300-byte hole"}[small]
		t.Run(name, func(t *testing.T) {
			tn := newTestNet(t)
			dev := tn.node(t)
			cli := newTestNode(t, "127.0.0.1:0")
			f := newForwarder(t, cli.LocalAddr(), tn.relayAddr)
			cli.SetRoutes(RelayRoute{Addr: f.nearAddr()}, nil)
			t.Cleanup(tn.relay.Attach(cli.Endpoint(), f.farAddr()))
			if small {
				f.maxSize.Store(1300)
			}
			dev.SetMode(PathRelay)
			cli.SetMode(PathRelay)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn := dialEcho(t, ctx, cli, dev)
			echoOver(t, ctx, conn, 1<<20, "through the relay")
			echoOver(t, ctx, conn, 4<<20, "after the probes")
			_, cliSize := sizeOf(cli, dev.Endpoint())
			_, devSize := sizeOf(dev, cli.Endpoint())
			if cliSize.fragments() != small || devSize.fragments() != small {
				t.Fatalf("fragments: client %v (%+v), device %v (%+v); want %v", cliSize.fragments(), cliSize, devSize.fragments(), devSize, small)
			}
			if got, want := cli.Peers()[0].Packets, map[bool]string{false: "whole", true: "fragments"}[small]; got != want {
				t.Fatalf("status says %q, want %q", got, want)
			}
			if !small && (cliSize.verdict != sizeWhole || devSize.verdict != sizeWhole) {
				t.Fatalf("verdicts: client %d, device %d; want whole (%d)", cliSize.verdict, devSize.verdict, sizeWhole)
			}
			if small && f.droppedBig.Load() == 0 {
				t.Fatal("nothing large was dropped: the hole was never tried")
			}
			t.Logf("%d datagrams over 1,300 bytes dropped", f.droppedBig.Load())
		})
	}
}

// The same on a direct path: the hole is on the only direct path between
// the two nodes, which stays in use with fragments.
func TestDirectPathSize(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev, cli, f, conn := forwardedPair(t, ctx, 1300)
	in0 := dev.Peers()[0].BytesIn
	echoOver(t, ctx, conn, 4<<20, "through the hole")
	if directVia(cli) != f.nearAddr() || directVia(dev) != f.farAddr() {
		t.Fatalf("the direct path was left: client %v, device %v", directVia(cli), directVia(dev))
	}
	cliSize, _ := sizeOf(cli, dev.Endpoint())
	devSize, _ := sizeOf(dev, cli.Endpoint())
	if !cliSize.fragments() || !devSize.fragments() {
		t.Fatalf("no fragments on a path that drops large datagrams: client %+v, device %+v", cliSize, devSize)
	}
	if got := dev.Peers()[0].BytesIn - in0; got < 4<<20 {
		t.Fatalf("device received %d bytes, want ≥ %d", got, 4<<20)
	}
	t.Logf("%d datagrams over 1,300 bytes dropped", f.droppedBig.Load())
}

// A peer from before packet sizing answers no probe and cannot join
// fragments: the handshake's whole copies reach it, and once its paths are
// judged mute it gets every packet whole, relayed and direct.
func TestUnsizedPeerGetsWholePackets(t *testing.T) {
	for _, mode := range []PathMode{PathRelay, PathAuto} {
		t.Run(mode.String(), func(t *testing.T) {
			tn := newTestNet(t)
			dev, cli := tn.node(t), tn.node(t)
			dev.testUnsized = true
			dev.SetMode(mode)
			cli.SetMode(mode)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn := dialEcho(t, ctx, cli, dev)
			echoOver(t, ctx, conn, 1<<20, "to the older peer")
			if mode == PathAuto {
				waitUntil(t, 10*time.Second, func() bool { return directVia(cli).IsValid() })
			}
			// Rounds go out while packets do: keep some flowing until the
			// verdict.
			deadline := time.Now().Add(sizeTries*sizeRetry + 2*time.Second)
			for {
				echoOver(t, ctx, conn, 64<<10, "while the probes go unanswered")
				direct, relay := sizeOf(cli, dev.Endpoint())
				s := relay
				if mode == PathAuto {
					s = direct
				}
				if s.verdict == sizeMute {
					if got := cli.Peers()[0].Packets; got != "unprobed" {
						t.Fatalf("status says %q, want unprobed", got)
					}
					break
				}
				if s.fragments() || time.Now().After(deadline) {
					t.Fatalf("size state %+v, want mute", s)
				}
				time.Sleep(100 * time.Millisecond)
			}
			echoOver(t, ctx, conn, 4<<20, "whole")
		})
	}
}

// A path the kernel refused a GSO write on (a link smaller than our
// datagrams) gets fragments when the peer joins them, whole packets when it
// does not; smaller packets are not affected.
func TestSmallPathGetsFragments(t *testing.T) {
	tx, to, got := captureSocket(t)
	var n Node
	hdr := []byte{frameDirect}
	run := bytes.Repeat([]byte{0x40}, 3*innerPacketSize)
	tx.markSmallPath(to, len(hdr)+innerPacketSize)
	for _, joins := range []bool{true, false} {
		_, frames := n.sendSized(tx, hdr, run, innerPacketSize, to, sizePlan{sz: sendWhole, joins: joins})
		fs := got(int(frames))
		fragments := 0
		for _, f := range fs {
			if f[1] == payloadFragment {
				fragments++
			}
		}
		if want := map[bool]int{true: 6, false: 0}[joins]; fragments != want || len(fs) != int(frames) {
			t.Fatalf("joins %v: %d frames, %d fragments; want %d fragments", joins, len(fs), fragments, want)
		}
	}
	small := bytes.Repeat([]byte{0x40}, 3*safePayload)
	if _, frames := n.sendSized(tx, hdr, small, safePayload, to, sizePlan{sz: sendWhole, joins: true}); frames != 3 {
		t.Fatalf("%d frames for 3 packets of %d bytes, want them whole", frames, safePayload)
	}
	got(3)
}

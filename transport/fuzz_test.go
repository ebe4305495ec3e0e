package transport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Every datagram that reaches a node's or a relay's UDP socket is a
// stranger's until proved otherwise. These targets feed the code that takes
// them apart — the cutting of a read into frames and packets, the relay's
// forwarder, a node's frame handler, disco messages and candidates —
// arbitrary bytes, and check what each promises about them.

// Fixed Endpoints, so that the committed corpus can name them.
const (
	fuzzEPA Endpoint = 0x0a0a0a0a0a0a0a0a // the fuzz relay's sender; the fuzz node itself
	fuzzEPB Endpoint = 0x0b0b0b0b0b0b0b0b // attached to the fuzz relay; the fuzz node's peer
	// fuzzMaxRun bounds a fuzzed read. A GRO read returns up to 64 KiB,
	// but longer runs take no path shorter ones do not (batches of
	// maxBatch frames fit in it), and each byte more slows the fuzzer's
	// minimizing of the inputs it finds.
	fuzzMaxRun = 1 << 12
)

// fuzzSecret is the disco secret of the fuzz node's connection to fuzzEPB.
var fuzzSecret = bytes.Repeat([]byte{0x5e}, 32)

// fuzzSeg turns a fuzzed segment size into one a socket hands on: 1 to
// len(run), where len(run) is a read of one datagram.
func fuzzSeg(run []byte, seg uint16) int {
	if seg == 0 || int(seg) > len(run) {
		return len(run)
	}
	return int(seg)
}

// fuzzSink opens a UDP socket that takes whatever is sent to it and is never
// read: somewhere real for a relay or node under fuzz to write to.
func fuzzSink(f *testing.F) netip.AddrPort {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { c.Close() })
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// toRelay is a toRelay frame to dst, padded with payload to size bytes.
func toRelay(dst Endpoint, size int) []byte {
	b := binary.BigEndian.AppendUint64([]byte{frameToRelay}, uint64(dst))
	for len(b) < size {
		b = append(b, byte(len(b)))
	}
	return b
}

func FuzzNextPiece(f *testing.F) {
	quic := append([]byte{0xc0}, make([]byte, 40)...)
	f.Add(toRelay(fuzzEPB, 50), uint16(0))
	f.Add(slices.Concat(toRelay(1, 20), toRelay(2, 20), quic[:20], toRelay(3, 7)), uint16(20))
	f.Add(slices.Concat(quic, quic, quic[:3]), uint16(41))
	f.Fuzz(func(t *testing.T, b []byte, segIn uint16) {
		if len(b) == 0 || len(b) > fuzzMaxRun {
			return // a read returns one datagram at least
		}
		seg := fuzzSeg(b, segIn)
		isFrame := func(off int) bool { return b[off]&0xc0 == 0 }
		for off, pieces := 0, 0; off < len(b); pieces++ {
			if pieces > len(b) {
				t.Fatalf("no end after %d pieces of a %d-byte read", pieces, len(b))
			}
			end, frames := nextPiece(b, off, seg)
			if end <= off || end > len(b) || (end != len(b) && end%seg != 0) {
				t.Fatalf("piece [%d:%d) of a %d-byte read in %d-byte datagrams", off, end, len(b), seg)
			}
			if frames != isFrame(off) {
				t.Fatalf("piece at %d: frames %v, first byte %#x", off, frames, b[off])
			}
			if !frames && end != min(off+seg, len(b)) {
				t.Fatalf("packet piece [%d:%d) is not one %d-byte datagram", off, end, seg)
			}
			if frames {
				// Every datagram of the run is a frame, and the run
				// stops only at a QUIC packet or the end of the read.
				for d := off; d < end; d += seg {
					if !isFrame(d) {
						t.Fatalf("frame run [%d:%d) holds a QUIC packet at %d", off, end, d)
					}
				}
				if end < len(b) && isFrame(end) {
					t.Fatalf("frame run [%d:%d) stops before the frame at %d", off, end, end)
				}
			}
			off = end
		}
	})
}

func FuzzRelayForward(f *testing.F) {
	r, err := ListenRelay("127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { r.Close() })
	// A registered node at from (fuzzEPA) and its peer (fuzzEPB); stranger
	// registered nothing.
	from, peer, stranger := fuzzSink(f), fuzzSink(f), fuzzSink(f)
	r.Attach(fuzzEPA, from)
	r.Attach(fuzzEPB, peer)

	f.Add(toRelay(fuzzEPB, 1200), uint16(0), true)
	f.Add(slices.Concat(toRelay(fuzzEPB, 100), toRelay(fuzzEPB, 100), toRelay(fuzzEPA, 100), toRelay(7, 100), toRelay(fuzzEPB, 60)), uint16(100), true)
	f.Add(toRelay(fuzzEPB, 1200), uint16(0), false)
	k, _ := identity.Generate()
	f.Add(slices.Concat(appendKeep(nil, Lease{Endpoint: fuzzEPA, ID: k.ID(), Expires: 1 << 40}, 1, false), toRelay(fuzzEPB, keepLen-frameHeaderLen)), uint16(keepLen), true)
	f.Fuzz(func(t *testing.T, run []byte, segIn uint16, attached bool) {
		if len(run) == 0 || len(run) > fuzzMaxRun {
			return
		}
		seg := fuzzSeg(run, segIn)
		src := stranger
		if attached {
			src = from
		}
		// What forward must leave in run: each datagram rewritten in
		// place as forwarded (fromRelay, stamped with the sender's
		// Endpoint), turned into a gone frame (a toRelay frame to an
		// Endpoint not attached), or untouched; from a stranger,
		// everything untouched and dropped. A run that starts with a keep
		// is all keeps, which this relay (no lease secret) drops.
		want := bytes.Clone(run)
		var fwd, drop uint64
		keeps := run[0] == frameKeep
		for off := 0; off < len(want); off += seg {
			d := want[off:min(off+seg, len(want))]
			switch {
			case keeps || !attached || len(d) < frameHeaderLen || d[0] != frameToRelay:
				drop++
			case Endpoint(binary.BigEndian.Uint64(d[1:9])) == fuzzEPA || Endpoint(binary.BigEndian.Uint64(d[1:9])) == fuzzEPB:
				d[0] = frameFromRelay
				binary.BigEndian.PutUint64(d[1:9], uint64(fuzzEPA))
				fwd++
			default:
				d[0] = frameGone
				drop++
			}
		}
		fwd0, drop0 := r.Forwarded.Load(), r.Dropped.Load()
		r.forward(run, seg, src)
		if i := firstDiff(run, want); i >= 0 {
			d := i / seg * seg
			t.Fatalf("forward (seg %d, attached %v) left datagram %d as %x, want %x", seg, attached, d/seg,
				run[d:min(d+frameHeaderLen, len(run))], want[d:min(d+frameHeaderLen, len(want))])
		}
		if gotF, gotD := r.Forwarded.Load()-fwd0, r.Dropped.Load()-drop0; gotF != fwd || gotD != drop {
			t.Fatalf("forward (seg %d, attached %v) counted %d forwarded, %d dropped; want %d, %d", seg, attached, gotF, gotD, fwd, drop)
		}
	})
}

// firstDiff is the first index where a and b, of one length, differ, or -1.
func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// fuzzNode is a node whose one peer connection is fuzzEPB's, with secret
// fuzzSecret, and whose routing table names a home relay and another
// relay (for a peer reached after a redirect).
type fuzzNode struct {
	*Node
	peer                *path
	home, via, stranger netip.AddrPort
}

func newFuzzNode(f *testing.F) *fuzzNode {
	k := identity.FromPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	n, err := NewNode(k, "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { n.Close() })
	// A fixed Endpoint, so that the corpus can hold pings to it; nothing
	// reads it yet (no packet reaches this socket).
	n.endpoint = fuzzEPA
	fn := &fuzzNode{Node: n, home: fuzzSink(f), via: fuzzSink(f), stranger: fuzzSink(f)}
	n.SetRoutes(RelayRoute{Addr: fn.home}, map[Endpoint]RelayRoute{7: {Addr: fn.via}})
	fn.peer = newPath(fuzzEPB, n.addr(fuzzEPB))
	fn.peer.keys = []*discoKey{{secret: fuzzSecret, authorized: true}}
	n.paths[fuzzEPB] = fn.peer
	return fn
}

// reset forgets what the last run proved and queued.
func (fn *fuzzNode) reset() {
	fn.pathMu.Lock()
	clear(fn.byAddr)
	fn.pathMu.Unlock()
	fn.peer.mu.Lock()
	fn.peer.seen = nil
	fn.peer.keys[0].replay = replayWindow{}
	fn.peer.mu.Unlock()
	fn.innerPC.readMu.Lock()
	for {
		pkt, ok := fn.innerPC.poll()
		if !ok {
			break
		}
		fn.innerPC.queued.Add(-1)
		pkt.release()
	}
	fn.innerPC.readMu.Unlock()
	fn.reasm.close()
	for len(fn.gone) > 0 {
		<-fn.gone
	}
	select {
	case <-fn.peer.wake:
	default:
	}
}

// fuzzDisco is a ping or pong as fuzzEPB sends it to the fuzz node.
func fuzzDisco(typ byte) []byte {
	return appendDisco(nil, discoMsg{typ: typ, src: fuzzEPB, dst: fuzzEPA, seq: 1, txid: 0x1234}, fuzzSecret)
}

func FuzzNodeReceive(f *testing.F) {
	fn := newFuzzNode(f)
	// Payloads start as a QUIC short-header packet does (0x40), or as a
	// fragment of packet 5.
	relayed := func(src Endpoint, size int) []byte {
		b := toRelay(src, size)
		b[0], b[frameHeaderLen] = frameFromRelay, 0x40
		return b
	}
	direct := func(size int) []byte { return append([]byte{frameDirect, 0x40}, make([]byte, size-2)...) }
	frag := func(hdr []byte, i byte, size int) []byte {
		b := append(slices.Clone(hdr), payloadFragment, 0, 0, 0, 5, i)
		return append(b, make([]byte, size-len(b))...)
	}
	fromB := binary.BigEndian.AppendUint64([]byte{frameFromRelay}, uint64(fuzzEPB))
	f.Add(relayed(fuzzEPB, 1200), uint16(0), uint8(0))
	f.Add(slices.Concat(fuzzDisco(frameDiscoPing), direct(discoLen)), uint16(discoLen), uint8(2))
	f.Add(binary.BigEndian.AppendUint64([]byte{frameGone}, uint64(fuzzEPB)), uint16(0), uint8(1))
	f.Add(slices.Concat(frag(fromB, 1, 300), frag(fromB, 1, 300), frag(fromB, 0, 300)), uint16(300), uint8(0))
	f.Add(slices.Concat(fuzzDisco(frameDiscoPing), frag([]byte{frameDirect}, 0, discoLen), frag([]byte{frameDirect}, 1, 40)), uint16(discoLen), uint8(2))
	f.Fuzz(func(t *testing.T, run []byte, segIn uint16, fromSel uint8) {
		if len(run) == 0 || len(run) > fuzzMaxRun {
			return
		}
		seg := fuzzSeg(run, segIn)
		from := []netip.AddrPort{fn.home, fn.via, fn.stranger}[int(fromSel)%3]
		fn.reset()
		// What receive must do with each datagram: a fresh ping (its seq
		// accepted by a replay window) that fuzzEPB MACed proves from —
		// a pong proves nothing here, since it answers no ping this node
		// sent; inner packets are taken from a proved address (direct) or
		// from a relay in the routing table (fromRelay), gone notices
		// from such a relay only; the rest is dropped.
		fromRelay := from == fn.home || from == fn.via
		var window replayWindow
		var proved bool
		var queued, gone int
		var relayedIn, directIn uint64
		// Fragments join by sender and id (reassembly.go): a well-formed
		// one counts as received; its pair's second half queues a packet.
		type fragKey struct {
			src Endpoint
			id  uint32
		}
		halves := map[fragKey]uint8{}
		fragment := func(src Endpoint, p []byte) {
			if len(p) <= fragHeaderLen || len(p)-fragHeaderLen > fragMaxPiece || p[5] > 1 {
				return
			}
			k := fragKey{src, binary.BigEndian.Uint32(p[1:5])}
			if halves[k]&(1<<p[5]) == 0 {
				halves[k] |= 1 << p[5]
				if halves[k] == 3 {
					queued++
					delete(halves, k)
				}
			}
		}
		for off := 0; off < len(run); off += seg {
			d := run[off:min(off+seg, len(run))]
			switch {
			case d[0] == frameDiscoPing || d[0] == frameDiscoPong:
				if d[0] == frameDiscoPing && len(d) == discoLen && Endpoint(binary.BigEndian.Uint64(d[1:9])) == fuzzEPB &&
					Endpoint(binary.BigEndian.Uint64(d[9:17])) == fuzzEPA && macByHand(d) &&
					window.accept(binary.BigEndian.Uint64(d[17:25])) {
					proved = true
				}
			case d[0] == frameDirect:
				switch {
				case !proved || len(d) == 1:
				case d[1]&0xc0 != 0:
					queued++
					directIn += uint64(min(len(d)-1, packetBufSize))
				case d[1] == payloadFragment:
					directIn += uint64(len(d) - 1)
					fragment(fuzzEPB, d[1:])
				}
			case !fromRelay || len(d) < frameHeaderLen:
			case d[0] == frameGone:
				gone++
			case d[0] == frameFromRelay && len(d) > frameHeaderLen:
				p := d[frameHeaderLen:]
				switch {
				case p[0]&0xc0 != 0:
					queued++
					relayedIn += uint64(min(len(p), packetBufSize))
				case p[0] == payloadFragment:
					relayedIn += uint64(len(p))
					fragment(Endpoint(binary.BigEndian.Uint64(d[1:9])), p)
				}
			}
		}
		relayed0, direct0 := fn.RelayedIn.Load(), fn.peer.DirectIn.Load()
		fn.receive(bytes.Clone(run), seg, from)
		fn.pathMu.RLock()
		gotProved := fn.byAddr[from] == fn.peer
		fn.pathMu.RUnlock()
		if gotProved != proved || len(fn.byAddr) > 1 {
			t.Fatalf("from %s: proved %v (%d addresses), want %v", from, gotProved, len(fn.byAddr), proved)
		}
		if got, want := int(fn.innerPC.queued.Load()), min(queued, fn.innerPC.depth); got != want {
			t.Fatalf("from %s: %d inner packets queued, want %d", from, got, want)
		}
		if got, want := len(fn.gone), min(gone, goneQueue); got != want {
			t.Fatalf("from %s: %d gone notices, want %d", from, got, want)
		}
		if got := fn.RelayedIn.Load() - relayed0; got != relayedIn {
			t.Fatalf("from %s: %d relayed bytes in, want %d", from, got, relayedIn)
		}
		if got := fn.peer.DirectIn.Load() - direct0; got != directIn {
			t.Fatalf("from %s: %d direct bytes in, want %d", from, got, directIn)
		}
	})
}

// macByHand checks a disco message's MAC with fuzzSecret as frame.go
// describes it, without frameMACValid.
func macByHand(b []byte) bool {
	m := hmac.New(sha256.New, fuzzSecret)
	m.Write(b[:discoLen-16])
	return bytes.Equal(m.Sum(nil)[:16], b[discoLen-16:])
}

func FuzzParseDisco(f *testing.F) {
	f.Add(fuzzDisco(frameDiscoPing), fuzzSecret)
	f.Add(fuzzDisco(frameDiscoPong), []byte("another secret"))
	f.Add(fuzzDisco(frameDiscoPing)[:discoLen-1], fuzzSecret)
	f.Fuzz(func(t *testing.T, b, secret []byte) {
		m, ok := parseDisco(b)
		if want := len(b) == discoLen && (b[0] == frameDiscoPing || b[0] == frameDiscoPong); ok != want {
			t.Fatalf("parseDisco(%x) ok = %v, want %v", b, ok, want)
		}
		if !ok {
			return
		}
		enc := appendDisco([]byte("prefix"), m, secret)
		if len(enc) != len("prefix")+discoLen || string(enc[:len("prefix")]) != "prefix" {
			t.Fatalf("appendDisco wrote %d bytes, or over what it appends to", len(enc)-len("prefix"))
		}
		enc = enc[len("prefix"):]
		if !bytes.Equal(enc[:discoLen-16], b[:discoLen-16]) {
			t.Fatalf("parseDisco(%x) = %+v, which appendDisco writes as %x", b, m, enc)
		}
		// The MAC check takes exactly the MAC made with the secret.
		if got, want := frameMACValid(b, secret), bytes.Equal(b, enc); got != want {
			t.Fatalf("frameMACValid(%x, %x) = %v, want %v", b, secret, got, want)
		}
		if !frameMACValid(enc, secret) {
			t.Fatalf("frameMACValid refuses what appendDisco MACed with %x", secret)
		}
		// HMAC keys are zero-padded to a block, so a secret and the
		// same with a zero appended are one key; flip a bit instead.
		other := append([]byte{1}, secret...)
		if len(secret) > 0 {
			other = bytes.Clone(secret)
			other[0] ^= 1
		}
		if frameMACValid(enc, other) {
			t.Fatalf("frameMACValid takes a MAC made with %x under %x", secret, other)
		}
	})
}

func FuzzParseCandidates(f *testing.F) {
	f.Add(appendCandidates(nil, []netip.AddrPort{
		netip.MustParseAddrPort("203.0.113.7:40000"),
		netip.MustParseAddrPort("192.168.1.5:40000"),
		netip.MustParseAddrPort("[2001:db8::1]:40000"),
	}))
	f.Add([]byte{msgCandidates, 0})
	f.Add([]byte{msgCandidates, 1, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0, 80})
	f.Fuzz(func(t *testing.T, b []byte) {
		cands, err := parseCandidates(b)
		if err != nil {
			if err != errBadCandidates {
				t.Fatalf("parseCandidates(%x): %v", b, err)
			}
			return
		}
		if len(cands) > maxCandidates || len(cands) > int(b[1]) {
			t.Fatalf("parseCandidates(%x) returned %d candidates", b, len(cands))
		}
		for _, c := range cands {
			a := c.Addr()
			if c.Port() == 0 || !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.Is4In6() || a.Zone() != "" {
				t.Fatalf("parseCandidates(%x) took %s, which no peer can be probed at", b, c)
			}
		}
		// What parses re-encodes to a message that parses to the same,
		// and re-encodes to the same bytes again.
		enc := appendCandidates(nil, cands)
		again, err := parseCandidates(enc)
		if err != nil || !slices.Equal(again, cands) {
			t.Fatalf("parseCandidates(%x) = %v; re-encoded as %x, parses to %v, %v", b, cands, enc, again, err)
		}
		if enc2 := appendCandidates(nil, again); !bytes.Equal(enc2, enc) {
			t.Fatalf("candidates %v encode as %x, then as %x", cands, enc, enc2)
		}
	})
}

package transport

// Fragments: an inner packet too big for its path crosses it as two
// fragment payloads (frame.go), and the receiver joins them here.
//
// Reassembly is reachable by anyone who can send us frames: a peer on a
// proven direct path, or any node registered at our relay. So it holds a
// fixed number of partial packets, node-wide (reassemblySlots, one
// packet buffer each), and a new packet takes the slot of the oldest when
// all are busy. A flood of fragments can cost a peer packets that were
// half there, which QUIC retransmits; it cannot make the node hold more.

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
)

const (
	// fragHeaderLen is a fragment's type, id and index.
	fragHeaderLen = 1 + 4 + 1
	// reassemblySlots bounds the packets waiting for their other half.
	reassemblySlots = 64
	// fragMaxPiece is the largest half a receiver takes: each half has
	// its own half of a packet buffer until both are in.
	fragMaxPiece = packetBufSize / 2
)

// writeFragments sends each seg-byte packet of b (the last may be
// shorter) with hdr before it as two fragments: the first half's size
// ((seg+1)/2) is the same for every packet, so the fragments of a run of
// full packets leave in one GSO write. A last packet of safePayload bytes
// or less goes whole. ids numbers the fragmented packets. It returns the
// payload bytes and frames sent.
func (s *Socket) writeFragments(hdr, b []byte, seg int, to netip.AddrPort, ids *atomic.Uint32) (bytes, frames uint64) {
	half := (seg + 1) / 2
	dgram := len(hdr) + fragHeaderLen + half
	if seg <= 0 || half > fragMaxPiece || dgram > maxRunBytes {
		return 0, 0
	}
	per := min(maxBatch, maxRunBytes/dgram)
	bp := segBufs.Get().(*[]byte)
	defer segBufs.Put(bp)
	run, k := (*bp)[:0], 0
	flush := func() {
		if k > 0 {
			s.sendRun(run, dgram, k, to)
		}
		run, k = run[:0], 0
	}
	add := func(frame ...[]byte) {
		start := len(run)
		for _, f := range frame {
			run = append(run, f...)
		}
		bytes += uint64(len(run) - start - len(hdr))
		frames++
		k++
	}
	for len(b) > 0 {
		d := b[:min(seg, len(b))]
		b = b[len(d):]
		if len(d) <= safePayload {
			// Only a run's last packet can be this short: whole, as the
			// run's last (shorter) segment, or alone if it is longer.
			if len(hdr)+len(d) > dgram {
				flush()
				add(hdr, d)
				s.sendRun(run, len(run), 1, to)
				run, k = run[:0], 0
				continue
			}
			add(hdr, d)
			flush()
			continue
		}
		if k+2 > per {
			flush()
		}
		var fh [2][fragHeaderLen]byte
		id := ids.Add(1)
		for i := range fh {
			fh[i][0] = payloadFragment
			binary.BigEndian.PutUint32(fh[i][1:], id)
			fh[i][5] = byte(i)
		}
		add(hdr, fh[0][:], d[:half])
		add(hdr, fh[1][:], d[half:])
		if len(d)-half < half {
			flush() // a shorter segment ends a GSO run
		}
	}
	flush()
	return bytes, frames
}

// reassembly holds the packets of which one fragment has arrived.
type reassembly struct {
	mu    sync.Mutex
	slots [reassemblySlots]fragSlot
	clock uint64
}

type fragSlot struct {
	src  Endpoint
	id   uint32
	have uint8  // bit i: fragment i is in
	age  uint64 // reassembly.clock when the slot was taken
	buf  *[]byte
	n    [2]int // the fragments' sizes; fragment i is at i*fragMaxPiece
}

// add takes the fragment b from src. When it completes a packet, it
// returns the packet's buffer (from packetBufs, the caller's to put back)
// and length.
func (r *reassembly) add(src Endpoint, b []byte) (*[]byte, int) {
	if len(b) <= fragHeaderLen || len(b)-fragHeaderLen > fragMaxPiece || b[5] > 1 {
		return nil, 0
	}
	id, i, piece := binary.BigEndian.Uint32(b[1:5]), int(b[5]), b[fragHeaderLen:]
	r.mu.Lock()
	defer r.mu.Unlock()
	var s *fragSlot
	free, oldest := -1, -1
	for j := range r.slots {
		c := &r.slots[j]
		switch {
		case c.buf == nil:
			if free < 0 {
				free = j
			}
		case c.src == src && c.id == id:
			s = c
		case oldest < 0 || c.age < r.slots[oldest].age:
			oldest = j
		}
		if s != nil {
			break
		}
	}
	if s == nil {
		j := free
		if j < 0 {
			j = oldest
			packetBufs.Put(r.slots[j].buf)
		}
		r.clock++
		s = &r.slots[j]
		*s = fragSlot{src: src, id: id, age: r.clock, buf: packetBufs.Get().(*[]byte)}
	}
	if s.have&(1<<i) != 0 {
		return nil, 0 // a duplicate
	}
	s.have |= 1 << i
	s.n[i] = copy((*s.buf)[i*fragMaxPiece:], piece)
	if s.have != 3 {
		return nil, 0
	}
	buf := s.buf
	m := s.n[0] + copy((*buf)[s.n[0]:], (*buf)[fragMaxPiece:fragMaxPiece+s.n[1]])
	*s = fragSlot{}
	return buf, m
}

// close drops what is waiting.
func (r *reassembly) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for j := range r.slots {
		if r.slots[j].buf != nil {
			packetBufs.Put(r.slots[j].buf)
		}
		r.slots[j] = fragSlot{}
	}
}

// held counts the packets waiting for their other half.
func (r *reassembly) held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for j := range r.slots {
		if r.slots[j].buf != nil {
			n++
		}
	}
	return n
}

package transport

import (
	"context"
	"testing"
	"time"
)

// A read's block goes back to the reader at once when nothing in it was
// queued, and to the pool when the last packet lent it is taken.
func TestBlockPoolLends(t *testing.T) {
	p := newBlockPool(64)
	k := p.get()
	if next := p.done(k); next != k || p.out.Load() != 0 {
		t.Fatalf("nothing lent: reader got %p (had %p), %d out", next, k, p.out.Load())
	}
	k.hold(2)
	next := p.done(k)
	if next == k || p.out.Load() != 1 {
		t.Fatalf("lent twice: reader got the lent block back, or %d out (want 1)", p.out.Load())
	}
	k.unref(1)
	if p.out.Load() != 1 {
		t.Fatalf("one of two packets taken: %d out, want 1", p.out.Load())
	}
	k.unref(1)
	if p.out.Load() != 0 {
		t.Fatalf("both taken: %d out, want 0", p.out.Load())
	}
	if again := p.done(next); again != next {
		t.Fatal("the reader's own block, lent to nothing, was not kept")
	}
	if p.made.Load() != 2 {
		t.Fatalf("%d blocks made, want 2", p.made.Load())
	}
}

// What a socket's blocks can hold is bounded: a small read lends nothing,
// and past maxLentBlocks out the reader lends no more (its packets are
// copied) until one comes back.
func TestBlockPoolBounded(t *testing.T) {
	p := newBlockPool(64)
	if p.lendable(lendMin - 1) {
		t.Fatalf("a read of %d bytes lends its block", lendMin-1)
	}
	k := p.get()
	var lent []*rxBlock
	for p.lendable(lendMin) {
		k.hold(1)
		lent = append(lent, k)
		k = p.done(k)
		if len(lent) > maxLentBlocks {
			t.Fatalf("%d blocks lent, bound %d", len(lent), maxLentBlocks)
		}
	}
	if len(lent) != maxLentBlocks {
		t.Fatalf("lending stopped at %d blocks, want %d", len(lent), maxLentBlocks)
	}
	lent[0].unref(1)
	if !p.lendable(lendMin) {
		t.Fatal("a block came back, and still no lending")
	}
	for _, b := range lent[1:] {
		b.unref(1)
	}
	if p.out.Load() != 0 {
		t.Fatalf("all given back: %d out", p.out.Load())
	}
}

// End to end over the direct path and over the relay, the received
// packets borrow the socket's read buffers (the reader had to make more
// than its first), and every block comes back once the bytes are through.
func TestReceivedPacketsGiveBlocksBack(t *testing.T) {
	for _, c := range pathModes {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			dev, cli, conn := modePair(t, ctx, c.mode)
			for range 3 {
				echoOver(t, ctx, conn, 4<<20, c.name)
			}
			if ps := cli.Peers(); len(ps) != 1 || ps[0].Direct.IsValid() != (c.mode == PathAuto) {
				t.Fatalf("peers %+v, want one %s", ps, c.name)
			}
			for _, nd := range []*Node{cli, dev} {
				b := nd.sock.blocks
				waitUntil(t, 5*time.Second, func() bool { return b.out.Load() == 0 })
				if made := b.made.Load(); made < 2 {
					t.Fatalf("%d blocks made: want more than the first, for lending", made)
				}
				t.Logf("%s: %d blocks made", c.name, b.made.Load())
			}
		})
	}
}

// Packets taken in a row drop their references to a block together, and
// a batch that mixes blocks and packets of their own gives every buffer
// back.
func TestReleaserMixedBatch(t *testing.T) {
	p := newBlockPool(64)
	a := p.get()
	a.hold(4)
	b := p.done(a)
	b.hold(2)
	p.done(b)
	own := func() queuedPacket { return ownPacket(packetBufs.Get().(*[]byte), 10, nil) }
	var rel releaser
	for _, pkt := range []queuedPacket{own(), {blk: a}, {blk: a}, {blk: a}, own(), {blk: b}, {blk: b}, {blk: a}} {
		rel.release(pkt)
	}
	// a's last packet waits for the flush; b's came back when a's began.
	if p.out.Load() != 1 || a.refs.Load() != 1 || b.refs.Load() != 0 {
		t.Fatalf("before the flush: %d out, refs a %d b %d; want 1 out (a), 1, 0", p.out.Load(), a.refs.Load(), b.refs.Load())
	}
	rel.flush()
	if p.out.Load() != 0 || a.refs.Load() != 0 {
		t.Fatalf("after the flush: %d out, block a %d refs; want 0, 0", p.out.Load(), a.refs.Load())
	}
}

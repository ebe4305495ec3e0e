package transport

import (
	"sync"
	"sync/atomic"
)

// Read buffers lent to the packets they hold.
//
// A node's socket reads a GRO run of up to 64 KiB at a time, and the
// end-to-end packets in it wait in the inner conn's queue until quic-go
// takes them. They used to be copied each into a 2 KiB buffer of their
// own; now they stay where the read put them, and the read's buffer (an
// rxBlock) is lent to them: the socket's reader reads into another block
// while any of them is queued, and the last one taken gives the block
// back. That saves a copy of every byte received and two pool operations
// per packet (BENCHMARKS.md, round eleven).
//
// Only a read of lendMin bytes or more lends its block: a lone small
// packet (an acknowledgement) is copied, as it would cost a whole block
// while it waits. What the blocks may hold is bounded like the copies
// they replace: at most maxLentBlocks are out at once per socket (4 MiB);
// past that, the packets of a read are copied, and the reader keeps its
// block. Only packets that would be queued anyway borrow (from a proved
// direct path, or frames of the relay the node is attached to), so a
// stranger's datagrams hold nothing. Blocks given back wait in a
// sync.Pool for the next reads, which the collector empties when they
// stop.

const (
	maxLentBlocks = 64
	lendMin       = 4 << 10
)

// rxBlock is the buffer of one socket read. refs counts who holds it: the
// reader while it hands out the read's contents, and each queued packet
// that lies in it.
type rxBlock struct {
	b    []byte
	refs atomic.Int32
	pool *blockPool
}

// hold takes n references, for n packets that lie in k. Counted per run
// and per batch taken, not per packet: the count's cache line moves
// between the reader's core and quic-go's once for each.
func (k *rxBlock) hold(n int32) { k.refs.Add(n) }

// unref drops n references; the last one gives the block back to its pool.
func (k *rxBlock) unref(n int32) {
	if k.refs.Add(-n) == 0 {
		k.pool.put(k)
	}
}

// blockPool is a socket's blocks: the ones out (lent to queued packets)
// and the free ones.
type blockPool struct {
	size int
	out  atomic.Int32 // blocks the reader let go while lent
	made atomic.Int32 // blocks allocated, for the tests
	free sync.Pool
}

func newBlockPool(size int) *blockPool {
	p := &blockPool{size: size}
	p.free.New = func() any {
		p.made.Add(1)
		return &rxBlock{b: make([]byte, p.size), pool: p}
	}
	return p
}

// get returns a block to read into, holding the reader's reference.
func (p *blockPool) get() *rxBlock {
	k := p.free.Get().(*rxBlock)
	k.refs.Store(1)
	return k
}

// lendable says whether a read of n bytes may lend its block to the
// packets in it.
func (p *blockPool) lendable(n int) bool { return n >= lendMin && p.out.Load() < maxLentBlocks }

// done is the reader's end of a read in k: it returns the block to read
// into next — k itself when nothing in k is queued, else another.
func (p *blockPool) done(k *rxBlock) *rxBlock {
	if k.refs.Add(-1) == 0 {
		k.refs.Store(1)
		return k
	}
	// Lent: the last packet taken puts it back (unref).
	p.out.Add(1)
	return p.get()
}

func (p *blockPool) put(k *rxBlock) {
	p.out.Add(-1)
	p.free.Put(k)
}

package transport

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
)

// Splice's buffers: one per direction of every spliced connection, held
// for as long as the connection lives, also while it is idle (a shell
// session that waits for keystrokes). A direction starts with a small
// buffer, and moves to a large one at its first read that fills the small
// one: a bulk transfer does so within its first packets, while an idle or
// interactive direction keeps holding a small one. Measured (BENCHMARKS.md,
// Footprint): 40 idle connections cost an agent 2.6 MiB of heap with
// 64 KiB from the start.
//
// A read that fills the large buffer too is a bulk transfer, and it moves
// to a bulk buffer while one is free: each read and write then carries
// four times as much, which means fewer TCP reads and writes, fewer
// wake-ups of quic-go's loop, and fewer short GSO runs at the end of each
// chunk. Measured (BENCHMARKS.md, round ten), in alternated pairs: a
// 1 GiB upload took 2–11 % less time and the sending socksd 3–7 % less
// CPU; the bench's direct downloads ran 5–21 % faster. The bulk buffers are
// few (spliceBulkSlots a process), so that many busy connections (the
// bench's 1,000 concurrent streams) hold no more than before plus 4 MiB,
// and a direction gives its bulk buffer back at its first read shorter
// than the small buffer (the transfer is over: a keystroke, a reply), so
// that a connection idle after a transfer does not keep one.
const (
	spliceSmallBuf  = 4 << 10
	spliceLargeBuf  = 64 << 10
	spliceBulkBuf   = 256 << 10
	spliceBulkSlots = 16
)

var (
	spliceSmallBufs = sync.Pool{New: func() any { b := make([]byte, spliceSmallBuf); return &b }}
	spliceBufs      = sync.Pool{New: func() any { b := make([]byte, spliceLargeBuf); return &b }}
	spliceBulkBufs  = sync.Pool{New: func() any { b := make([]byte, spliceBulkBuf); return &b }}

	// spliceBulk counts the bulk buffers in use in this process.
	spliceBulk = &bulkSlots{max: spliceBulkSlots}
)

// bulkSlots is a count of bulk buffers in use, bounded by max.
type bulkSlots struct {
	max   int32
	inUse atomic.Int32
}

// take reserves a slot if one is free.
func (s *bulkSlots) take() bool {
	for {
		n := s.inUse.Load()
		if n >= s.max {
			return false
		}
		if s.inUse.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *bulkSlots) give() { s.inUse.Add(-1) }

// errInvalidWrite is io.CopyBuffer's answer to a Write that claims more
// than it was given.
var errInvalidWrite = errors.New("invalid write result")

// spliceCopy copies src to dst until src's EOF (nil error) or the first
// error, as io.Copy does, with the pooled buffers: small until a read
// fills it, then large, then bulk while a read fills the large one and
// until one is shorter than the small one.
func spliceCopy(dst io.Writer, src io.Reader) (int64, error) {
	return spliceCopySlots(dst, src, spliceBulk)
}

// spliceCopySlots is spliceCopy with the bulk buffers counted in slots.
func spliceCopySlots(dst io.Writer, src io.Reader, slots *bulkSlots) (int64, error) {
	sp := spliceSmallBufs.Get().(*[]byte)
	written, more, err := copyUntil(dst, src, *sp, func(nr int) bool { return nr == spliceSmallBuf })
	spliceSmallBufs.Put(sp)
	for err == nil && more {
		var n int64
		bp := spliceBufs.Get().(*[]byte)
		n, more, err = copyUntil(dst, src, *bp, func(nr int) bool { return nr == spliceLargeBuf && slots.take() })
		spliceBufs.Put(bp)
		written += n
		if err != nil || !more {
			break
		}
		// A slot is ours from here on.
		kp := spliceBulkBufs.Get().(*[]byte)
		n, more, err = copyUntil(dst, src, *kp, func(nr int) bool { return nr < spliceSmallBuf })
		spliceBulkBufs.Put(kp)
		slots.give()
		written += n
	}
	return written, err
}

// copyUntil copies through buf until, after a read of nr bytes was
// written, next(nr) says to move on (more), or src ends (nil error), or an
// error.
func copyUntil(dst io.Writer, src io.Reader, buf []byte, next func(nr int) bool) (written int64, more bool, err error) {
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			if nw < 0 || nw > nr {
				nw, werr = 0, errInvalidWrite
			}
			written += int64(nw)
			if werr != nil {
				return written, false, werr
			}
			if nw != nr {
				return written, false, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return written, false, nil
		}
		if rerr != nil {
			return written, false, rerr
		}
		if nr > 0 && next(nr) {
			return written, true, nil
		}
	}
}

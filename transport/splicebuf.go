package transport

import (
	"errors"
	"io"
	"sync"
)

// Splice's buffers: one per direction of every spliced connection, held
// for as long as the connection lives, also while it is idle (a shell
// session that waits for keystrokes). A direction starts with a small
// buffer, and moves to a large one at its first read that fills the small
// one: a bulk transfer does so within its first packets and then runs
// with the large buffer as before, while an idle or interactive direction
// keeps holding a small one. Measured (BENCHMARKS.md, Footprint): 40 idle
// connections cost an agent 2.6 MiB of heap with 64 KiB from the start.
const (
	spliceSmallBuf = 4 << 10
	spliceLargeBuf = 64 << 10
)

var (
	spliceSmallBufs = sync.Pool{New: func() any { b := make([]byte, spliceSmallBuf); return &b }}
	spliceBufs      = sync.Pool{New: func() any { b := make([]byte, spliceLargeBuf); return &b }}
)

// errInvalidWrite is io.CopyBuffer's answer to a Write that claims more
// than it was given.
var errInvalidWrite = errors.New("invalid write result")

// spliceCopy copies src to dst until src's EOF (nil error) or the first
// error, as io.Copy does, with the pooled buffers: small until a read
// fills it, large from then on.
func spliceCopy(dst io.Writer, src io.Reader) (int64, error) {
	sp := spliceSmallBufs.Get().(*[]byte)
	n, full, err := copyUntilFull(dst, src, *sp)
	spliceSmallBufs.Put(sp)
	if err != nil || !full {
		return n, err
	}
	bp := spliceBufs.Get().(*[]byte)
	m, err := io.CopyBuffer(writerOnly{dst}, readerOnly{src}, *bp)
	spliceBufs.Put(bp)
	return n + m, err
}

// copyUntilFull copies through buf until a read fills buf (full), src
// ends (nil error) or an error.
func copyUntilFull(dst io.Writer, src io.Reader, buf []byte) (written int64, full bool, err error) {
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
		if nr == len(buf) {
			return written, true, nil
		}
	}
}

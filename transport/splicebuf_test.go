package transport

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// sizedReader hands out data in chunks of at most chunk bytes and records
// the size of every buffer it was given.
type sizedReader struct {
	data  []byte
	chunk int
	asked []int
}

func (r *sizedReader) Read(p []byte) (int, error) {
	r.asked = append(r.asked, len(p))
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), r.chunk)], r.data)
	r.data = r.data[n:]
	return n, nil
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestSpliceCopyGrowsOnAFullRead(t *testing.T) {
	data := randomBytes(1 << 20)
	src := &sizedReader{data: data, chunk: 1 << 30}
	var dst bytes.Buffer
	n, err := spliceCopy(writerOnly{&dst}, src)
	if err != nil || n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copied %d bytes (want %d), err %v, equal %v", n, len(data), err, bytes.Equal(dst.Bytes(), data))
	}
	if src.asked[0] != spliceSmallBuf {
		t.Fatalf("first read offered %d bytes, want the small buffer's %d", src.asked[0], spliceSmallBuf)
	}
	for i, a := range src.asked[1:] {
		if a != spliceLargeBuf {
			t.Fatalf("read %d after a full one offered %d bytes, want the large buffer's %d", i+1, a, spliceLargeBuf)
		}
	}
}

func TestSpliceCopySmallReadsKeepTheSmallBuffer(t *testing.T) {
	data := randomBytes(200 << 10)
	src := &sizedReader{data: data, chunk: spliceSmallBuf - 1}
	var dst bytes.Buffer
	n, err := spliceCopy(writerOnly{&dst}, src)
	if err != nil || n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copied %d bytes (want %d), err %v", n, len(data), err)
	}
	for i, a := range src.asked {
		if a != spliceSmallBuf {
			t.Fatalf("read %d offered %d bytes, want %d: no read filled the small buffer", i, a, spliceSmallBuf)
		}
	}
}

type shortWriter struct{ n int }

func (w *shortWriter) Write(p []byte) (int, error) { return min(len(p), w.n), nil }

type failingReader struct{ err error }

func (r failingReader) Read([]byte) (int, error) { return 0, r.err }

func TestSpliceCopyErrors(t *testing.T) {
	// A short write in either buffer's phase is io.ErrShortWrite, with
	// what was written counted.
	for _, size := range []int{100, 1 << 20} {
		n, err := spliceCopy(&shortWriter{n: 10}, &sizedReader{data: randomBytes(size), chunk: 1 << 30})
		if !errors.Is(err, io.ErrShortWrite) || n != 10 {
			t.Errorf("%d bytes into a short writer: %d written, err %v; want 10 and io.ErrShortWrite", size, n, err)
		}
	}
	boom := errors.New("boom")
	if n, err := spliceCopy(io.Discard, failingReader{boom}); !errors.Is(err, boom) || n != 0 {
		t.Errorf("failing reader: %d, %v; want 0 and its error", n, err)
	}
	// A reader's error after the switch to the large buffer comes back too.
	r := io.MultiReader(&sizedReader{data: randomBytes(1 << 20), chunk: 1 << 30}, failingReader{boom})
	if n, err := spliceCopy(io.Discard, r); !errors.Is(err, boom) || n != 1<<20 {
		t.Errorf("reader failing after 1 MiB: %d, %v; want 1 MiB and its error", n, err)
	}
}

package transport

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
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
	data := randomBytes(4 << 20)
	src := &sizedReader{data: data, chunk: 1 << 30}
	var dst bytes.Buffer
	slots := &bulkSlots{max: 1}
	n, err := spliceCopySlots(&dst, src, slots)
	if err != nil || n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copied %d bytes (want %d), err %v, equal %v", n, len(data), err, bytes.Equal(dst.Bytes(), data))
	}
	want := []int{spliceSmallBuf, spliceLargeBuf}
	for len(want) < len(src.asked) {
		want = append(want, spliceBulkBuf)
	}
	if !slices.Equal(src.asked, want) {
		t.Fatalf("reads offered %v bytes; want the small buffer, the large one once, then the bulk one: %v", src.asked, want)
	}
	if n := slots.inUse.Load(); n != 0 {
		t.Fatalf("%d bulk buffers still counted in use after the copy", n)
	}
}

// With every bulk buffer in use, a busy direction keeps the large one.
func TestSpliceCopyBulkBuffersAreFew(t *testing.T) {
	data := randomBytes(2 << 20)
	src := &sizedReader{data: data, chunk: 1 << 30}
	var dst bytes.Buffer
	slots := &bulkSlots{max: 2}
	slots.take()
	slots.take()
	if slots.take() {
		t.Fatal("a third slot of two")
	}
	n, err := spliceCopySlots(&dst, src, slots)
	if err != nil || n != int64(len(data)) || !bytes.Equal(dst.Bytes(), data) {
		t.Fatalf("copied %d bytes (want %d), err %v", n, len(data), err)
	}
	for i, a := range src.asked[1:] {
		if a != spliceLargeBuf {
			t.Fatalf("read %d offered %d bytes with no bulk buffer free; want %d", i+1, a, spliceLargeBuf)
		}
	}
	if n := slots.inUse.Load(); n != 2 {
		t.Fatalf("%d slots in use after the copy; want the 2 taken before", n)
	}
}

// scriptReader hands out its chunks one per read, each no larger than
// the buffer offered, and records the buffer sizes.
type scriptReader struct {
	chunks []int
	asked  []int
	sent   int
}

func (r *scriptReader) Read(p []byte) (int, error) {
	r.asked = append(r.asked, len(p))
	if len(r.chunks) == 0 {
		return 0, io.EOF
	}
	n := min(r.chunks[0], len(p))
	if n == r.chunks[0] {
		r.chunks = r.chunks[1:]
	} else {
		r.chunks[0] -= n
	}
	for i := range p[:n] {
		p[i] = byte(r.sent + i)
	}
	r.sent += n
	return n, nil
}

// A read shorter than the small buffer ends the bulk: the bulk buffer
// goes back (to the next transfer, or to the pool), and the large one
// serves until a read fills it again.
func TestSpliceCopyBulkEnds(t *testing.T) {
	const big = 1 << 20
	src := &scriptReader{chunks: []int{big, big, big, 100, spliceSmallBuf, big, big}}
	slots := &bulkSlots{max: 1}
	var dst bytes.Buffer
	n, err := spliceCopySlots(&dst, src, slots)
	if err != nil || n != int64(src.sent) || dst.Len() != src.sent {
		t.Fatalf("copied %d of %d bytes, err %v", n, src.sent, err)
	}
	for i, b := range dst.Bytes() {
		if b != byte(i) {
			t.Fatalf("byte %d is %d, want %d", i, b, byte(i))
		}
	}
	if src.asked[0] != spliceSmallBuf || src.asked[1] != spliceLargeBuf || src.asked[2] != spliceBulkBuf {
		t.Fatalf("first reads offered %v; want small, large, bulk", src.asked[:3])
	}
	// The 100-byte read was the bulk buffer's last; the next read (the
	// 4 KiB chunk) and the one after go to the large buffer, which the
	// latter fills: bulk again.
	var afterSmall []int
	for j, a := range src.asked {
		if j > 2 && a != spliceBulkBuf {
			afterSmall = src.asked[j:]
			break
		}
	}
	if len(afterSmall) < 3 || afterSmall[0] != spliceLargeBuf || afterSmall[1] != spliceLargeBuf || afterSmall[2] != spliceBulkBuf {
		t.Fatalf("reads after the bulk ended offered %v; want large, large, then bulk", afterSmall)
	}
	if n := slots.inUse.Load(); n != 0 {
		t.Fatalf("%d bulk buffers counted in use after the copy", n)
	}
}

func TestSpliceCopySmallReadsKeepTheSmallBuffer(t *testing.T) {
	data := randomBytes(200 << 10)
	src := &sizedReader{data: data, chunk: spliceSmallBuf - 1}
	var dst bytes.Buffer
	n, err := spliceCopy(&dst, src)
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

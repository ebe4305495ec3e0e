package transport

import "sync/atomic"

// Metered wraps h so that every Read adds its bytes to read and every
// Write to written, as they happen: a long session shows in metrics while
// it lasts, not only once it ends. One atomic add per chunk (Splice moves
// up to 64 KiB at a time) is all it costs.
func Metered(h HalfConn, read, written *atomic.Uint64) HalfConn {
	return metered{h, read, written}
}

type metered struct {
	HalfConn
	read, written *atomic.Uint64
}

func (m metered) Read(p []byte) (int, error) {
	n, err := m.HalfConn.Read(p)
	if n > 0 {
		m.read.Add(uint64(n))
	}
	return n, err
}

func (m metered) Write(p []byte) (int, error) {
	n, err := m.HalfConn.Write(p)
	if n > 0 {
		m.written.Add(uint64(n))
	}
	return n, err
}

package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"github.com/quic-go/quic-go"
)

// HalfConn is a full-duplex byte stream whose directions end separately.
// Splice relies on exactly this: CloseWrite ends only the outgoing direction
// (the peer reads EOF, and reading here goes on); Abort ends both at once and
// makes the peer see an error rather than a clean end; Close releases what is
// left once both directions have ended normally.
type HalfConn interface {
	io.Reader
	io.Writer
	CloseWrite() error
	Abort()
	Close() error
}

// StreamErrorCode values used on end-to-end streams.
const (
	// StreamAborted is the code a stream is reset with when the splice
	// behind it failed.
	StreamAborted quic.StreamErrorCode = 1
)

// Stream adapts a QUIC stream to HalfConn. Close on a quic-go stream closes
// only its send side, which is CloseWrite here; Abort resets both sides.
func Stream(s *quic.Stream) HalfConn { return quicStream{s} }

type quicStream struct{ s *quic.Stream }

func (q quicStream) Read(p []byte) (int, error)  { return q.s.Read(p) }
func (q quicStream) Write(p []byte) (int, error) { return q.s.Write(p) }
func (q quicStream) CloseWrite() error           { return q.s.Close() }
func (q quicStream) Abort() {
	q.s.CancelRead(StreamAborted)
	q.s.CancelWrite(StreamAborted)
}

// Close must not reset the send side: its FIN may not be acknowledged yet,
// and a reset would discard data the peer has not received.
func (q quicStream) Close() error {
	q.s.CancelRead(0) // a no-op once EOF was read
	return nil
}

// Conn adapts a net.Conn to HalfConn. TCP and Unix connections half-close;
// Abort on a TCP connection sends a reset so that the far end sees a broken
// session, never a clean end of data. On Linux a *net.TCPConn reads and
// writes without the scheduler's system-call hooks (tcpconn_linux.go); its
// errors, deadlines and close are the net package's.
func Conn(c net.Conn) HalfConn {
	if tc, ok := c.(*net.TCPConn); ok {
		if h := rawTCP(tc); h != nil {
			return h
		}
	}
	return netConn{c}
}

type netConn struct{ net.Conn }

func (c netConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		err := cw.CloseWrite()
		if errors.Is(err, syscall.ENOTCONN) {
			// The peer closed both directions already: its EOF is moot.
			return nil
		}
		return err
	}
	return c.Conn.Close()
}

func (c netConn) Abort() {
	if l, ok := c.Conn.(interface{ SetLinger(int) error }); ok {
		_ = l.SetLinger(0)
	}
	_ = c.Conn.Close()
}

// Stdio is the process's standard input and output as one HalfConn (what
// `tunnel connect` splices to a stream): CloseWrite closes standard
// output, so the reader on the other end sees EOF.
func Stdio() HalfConn { return stdio{} }

type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) CloseWrite() error           { return os.Stdout.Close() }
func (stdio) Abort()                      { os.Stdin.Close(); os.Stdout.Close() }
func (stdio) Close() error                { os.Stdin.Close(); return nil }

// Splice copies a→b and b→a until both directions end, passing each EOF on
// as a half-close, so `cat f | ssh host 'cat > f'` neither hangs nor
// truncates. If either direction fails, or ctx ends, both are aborted. It
// returns the bytes moved each way and the first error, if any.
func Splice(ctx context.Context, a, b HalfConn) (aToB, bToA int64, err error) {
	type result struct {
		aToB bool
		n    int64
		err  error
	}
	done := make(chan result, 2)
	pipe := func(dst, src HalfConn, forward bool) {
		n, err := spliceCopy(dst, src)
		if err == nil {
			err = dst.CloseWrite()
		}
		done <- result{forward, n, err}
	}
	go pipe(b, a, true)
	go pipe(a, b, false)

	var once sync.Once
	abort := func() { once.Do(func() { a.Abort(); b.Abort() }) }
	stop := context.AfterFunc(ctx, abort)
	defer func() {
		if !stop() {
			once.Do(func() {}) // waits for an abort already under way
		}
	}()
	for range 2 {
		r := <-done
		if r.aToB {
			aToB = r.n
		} else {
			bToA = r.n
		}
		if r.err != nil && err == nil {
			err = r.err
			abort()
		}
	}
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err == nil {
		err = errors.Join(a.Close(), b.Close())
	} else {
		a.Close()
		b.Close()
	}
	return aToB, bToA, err
}

package transport

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// Conn gives a TCP connection the hook-free reads and writes, and they
// move bytes both ways at once, large writes and short reads alike.
func TestTCPConnMovesBytes(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	ha, hb := Conn(a), Conn(b)
	if _, ok := ha.(tcpConn); !ok {
		t.Fatalf("Conn(*net.TCPConn) is a %T, want tcpConn", ha)
	}
	up, down := make([]byte, 8<<20), make([]byte, 3<<20)
	_, _ = rand.Read(up)
	_, _ = rand.Read(down)
	type res struct {
		got []byte
		err error
	}
	recv := func(h HalfConn, want int, out chan<- res) {
		got := make([]byte, 0, want)
		buf := make([]byte, 1500) // shorter than what is queued: partial reads
		for len(got) < want {
			n, err := h.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				out <- res{got, err}
				return
			}
		}
		out <- res{got, nil}
	}
	atB, atA := make(chan res, 1), make(chan res, 1)
	go recv(hb, len(up), atB)
	go recv(ha, len(down), atA)
	wrote := make(chan error, 1)
	go func() {
		n, err := hb.Write(down) // larger than the socket buffers: waits in the poller
		if err == nil && n != len(down) {
			err = io.ErrShortWrite
		}
		wrote <- err
	}()
	if n, err := ha.Write(up); err != nil || n != len(up) {
		t.Fatalf("write %d of %d: %v", n, len(up), err)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		ch   chan res
		want []byte
	}{{atB, up}, {atA, down}} {
		got := <-r.ch
		if got.err != nil || !bytes.Equal(got.got, r.want) {
			t.Fatalf("read %d of %d bytes, equal %v: %v", len(got.got), len(r.want), bytes.Equal(got.got, r.want), got.err)
		}
	}
	if n, err := ha.Write(nil); n != 0 || err != nil {
		t.Fatalf("empty write: %d, %v", n, err)
	}
	if n, err := ha.Read(nil); n != 0 || err != nil {
		t.Fatalf("empty read: %d, %v", n, err)
	}
}

// Ends and failures read as the net package reports them: a half-close is
// io.EOF, a reset ECONNRESET, a deadline a timeout, a close net.ErrClosed,
// each an *net.OpError of the operation.
func TestTCPConnErrors(t *testing.T) {
	t.Run("eof", func(t *testing.T) {
		a, b := tcpPair(t)
		defer a.Close()
		defer b.Close()
		_ = b.CloseWrite()
		if n, err := Conn(a).Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after the peer's half-close: %d, %v, want io.EOF", n, err)
		}
	})
	t.Run("reset", func(t *testing.T) {
		a, b := tcpPair(t)
		defer a.Close()
		Conn(b).Abort()
		_, err := Conn(a).Read(make([]byte, 8))
		var oe *net.OpError
		if !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "read" {
			t.Fatalf("read after the peer's reset: %v, want a read OpError of ECONNRESET", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		a, b := tcpPair(t)
		defer a.Close()
		defer b.Close()
		_ = a.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		_, err := Conn(a).Read(make([]byte, 8))
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read past its deadline: %v, want a timeout", err)
		}
		// A peer that never reads: writes fill the buffers, then one waits
		// until its deadline and says how much of it went.
		chunk := make([]byte, 1<<20)
		_ = a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		total := 0
		for err = nil; err == nil && total < 1<<30; {
			var n int
			n, err = Conn(a).Write(chunk)
			if err == nil && n != len(chunk) {
				t.Fatalf("write returned %d of %d without an error", n, len(chunk))
			}
			total += n
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) || total == 0 {
			t.Fatalf("writes to a peer that does not read: %d bytes, then %v; want some, then a timeout", total, err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		a, b := tcpPair(t)
		defer b.Close()
		done := make(chan error, 1)
		go func() {
			_, err := Conn(a).Read(make([]byte, 8))
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		a.Close()
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read on a closed connection: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("closing the connection did not end the read")
		}
	})
}

// A connection whose socket was switched to blocking mode (Fd of a File
// taken of it does that: the two share the socket's flags) keeps the net
// package's calls: a blocking read issued with RawSyscall would hold its
// P until data came.
func TestTCPConnBlockingSocketKeepsNetCalls(t *testing.T) {
	a, b := tcpPair(t)
	defer a.Close()
	defer b.Close()
	f, err := a.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_ = f.Fd() // puts the shared file description in blocking mode
	if h, ok := Conn(a).(tcpConn); ok {
		t.Fatalf("Conn of a blocking socket is a %T, want the net package's calls", h)
	}
	if _, ok := Conn(b).(tcpConn); !ok {
		t.Fatal("Conn of the other, non-blocking end lost the hook-free calls")
	}
}

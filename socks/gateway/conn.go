package gateway

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// DeviceAddr is the address of a device port, as the RemoteAddr of a
// stream to it.
type DeviceAddr struct {
	ID   identity.ID
	Port uint16
}

func (a DeviceAddr) Network() string { return "tunnel" }
func (a DeviceAddr) String() string {
	return net.JoinHostPort(a.ID.String()+".tunnel", strconv.Itoa(int(a.Port)))
}

// gatewayAddr is the local end of every stream: the gateway itself.
type gatewayAddr struct{}

func (gatewayAddr) Network() string { return "tunnel" }
func (gatewayAddr) String() string  { return "gateway" }

// errNoDeadline is returned by the deadline setters of a stream that has
// none (a stream from dialer.Dialer hides its QUIC stream). net/http's
// client never sets deadlines on plain HTTP connections; the gateway bounds
// its waits with contexts and its Transport's timeouts instead.
var errNoDeadline = fmt.Errorf("tunnel stream deadlines: %w", errors.ErrUnsupported)

// Bounds of the drain in a clean Close.
const (
	drainTimeout = 2 * time.Second
	maxDrain     = 64 << 10
)

// streamConn presents a device stream as a net.Conn for net/http.
//
// Close must end the stream the way its state calls for. After a clean
// exchange (nothing in flight, no error) it half-closes, so the device sees
// EOF as from a client that finished, and then reads what is left up to the
// device's own EOF (at most drainTimeout and maxDrain) before releasing the
// stream: net/http closes as soon as it has the whole response, and telling
// the device to stop sending before it has sent its end would turn a
// complete exchange into an aborted one on the device. With a Read or Write
// still blocked — an upgraded connection torn down from the other side, a
// request cancelled mid-response — or after an error, it aborts (both
// directions reset), which is what unblocks them, and the device sees a
// broken session, never a clean end. One exception: once the device has
// ended its side, what is still in flight can only be a Write whose
// goroutine has not returned yet, though the device has answered it;
// Close waits for it (at most drainTimeout) and then ends cleanly.
type streamConn struct {
	hc     transport.HalfConn
	remote DeviceAddr
	closed func() // after Close has finished; may be nil

	mu       sync.Mutex
	busy     int           // Reads, Writes and CloseWrites in flight
	settled  chan struct{} // closed when busy drops to 0, if Close waits for it
	failed   bool          // a Read or Write failed (not EOF, not a deadline)
	wClosed  bool
	eof      bool // a Read returned io.EOF
	isClosed bool
	once     sync.Once
	err      error // of Close

	up, down atomic.Int64 // bytes written to / read from the device
}

func newStreamConn(hc transport.HalfConn, remote DeviceAddr, closed func()) *streamConn {
	return &streamConn{hc: hc, remote: remote, closed: closed}
}

func (c *streamConn) begin(op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.isClosed {
		return &net.OpError{Op: op, Net: "tunnel", Addr: c.remote, Err: net.ErrClosed}
	}
	if op == "write" && c.wClosed {
		return &net.OpError{Op: op, Net: "tunnel", Addr: c.remote, Err: errors.New("write after CloseWrite")}
	}
	c.busy++
	return nil
}

func (c *streamConn) end(err error) {
	c.mu.Lock()
	c.busy--
	if c.busy == 0 && c.settled != nil {
		close(c.settled)
		c.settled = nil
	}
	switch {
	case err == io.EOF:
		c.eof = true
	case err != nil && !errors.Is(err, os.ErrDeadlineExceeded):
		c.failed = true
	}
	c.mu.Unlock()
}

func (c *streamConn) Read(p []byte) (int, error) {
	if err := c.begin("read"); err != nil {
		return 0, err
	}
	n, err := c.hc.Read(p)
	c.down.Add(int64(n))
	c.end(err)
	return n, err
}

func (c *streamConn) Write(p []byte) (int, error) {
	if err := c.begin("write"); err != nil {
		return 0, err
	}
	n, err := c.hc.Write(p)
	c.up.Add(int64(n))
	c.end(err)
	return n, err
}

// CloseWrite ends the direction towards the device; ReverseProxy calls it
// when the client of an upgraded connection half-closes.
func (c *streamConn) CloseWrite() error {
	if err := c.begin("close write"); err != nil {
		return err
	}
	c.mu.Lock()
	done := c.wClosed
	c.wClosed = true
	c.mu.Unlock()
	var err error
	if !done {
		err = c.hc.CloseWrite()
	}
	c.end(err)
	return err
}

func (c *streamConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		c.isClosed = true
		if c.busy > 0 && c.eof && !c.failed {
			// The device has ended its side, so nothing in flight is a
			// Read (they return EOF at once now): it is a Write whose
			// goroutine is not back yet — net/http's writer of a request
			// the device has already answered, seen on a loaded machine.
			// Wait for it, bounded, rather than reset a complete exchange.
			settled := make(chan struct{})
			c.settled = settled
			c.mu.Unlock()
			t := time.NewTimer(drainTimeout)
			select {
			case <-settled:
			case <-t.C:
			}
			t.Stop()
			c.mu.Lock()
			c.settled = nil
		}
		abort := c.busy > 0 || c.failed
		wClosed, eof := c.wClosed, c.eof
		c.mu.Unlock()
		if !abort && !wClosed {
			if c.err = c.hc.CloseWrite(); c.err != nil {
				abort = true
			}
		}
		if !abort && !eof {
			abort = !c.drain()
		}
		if abort {
			c.hc.Abort()
		}
		if err := c.hc.Close(); c.err == nil {
			c.err = err
		}
		if c.closed != nil {
			c.closed()
		}
	})
	return c.err
}

// drain reads the rest of the stream, bounded in time and size, and
// reports whether it reached the device's EOF.
func (c *streamConn) drain() bool {
	var timedOut atomic.Bool
	t := time.AfterFunc(drainTimeout, func() { timedOut.Store(true); c.hc.Abort() })
	n, err := io.Copy(io.Discard, io.LimitReader(c.hc, maxDrain+1))
	t.Stop()
	c.down.Add(n)
	return err == nil && n <= maxDrain && !timedOut.Load()
}

// Bytes returns the bytes written to and read from the device so far.
func (c *streamConn) Bytes() (up, down int64) { return c.up.Load(), c.down.Load() }

func (c *streamConn) LocalAddr() net.Addr  { return gatewayAddr{} }
func (c *streamConn) RemoteAddr() net.Addr { return c.remote }

func (c *streamConn) SetDeadline(t time.Time) error {
	if d, ok := c.hc.(interface{ SetDeadline(time.Time) error }); ok {
		return d.SetDeadline(t)
	}
	return errNoDeadline
}

func (c *streamConn) SetReadDeadline(t time.Time) error {
	if d, ok := c.hc.(interface{ SetReadDeadline(time.Time) error }); ok {
		return d.SetReadDeadline(t)
	}
	return errNoDeadline
}

func (c *streamConn) SetWriteDeadline(t time.Time) error {
	if d, ok := c.hc.(interface{ SetWriteDeadline(time.Time) error }); ok {
		return d.SetWriteDeadline(t)
	}
	return errNoDeadline
}

package transport

import (
	"net"
	"os"
	"sync"
	"time"
)

// packetBufSize holds any packet a 1500-byte MTU carries, with room to
// spare; larger datagrams are truncated and then fail authentication.
const packetBufSize = 2048

var packetBufs = sync.Pool{New: func() any { b := make([]byte, packetBufSize); return &b }}

type queuedPacket struct {
	buf  *[]byte
	n    int
	addr net.Addr
}

// queueConn is a net.PacketConn whose reads come from a queue that the
// socket's reader fills and whose writes go to a function. quic-go runs on
// it. Its read deadline is real: quic-go's Transport.Close sets one to stop
// its reader and would wait forever otherwise.
type queueConn struct {
	in     chan queuedPacket
	write  func(b []byte, addr net.Addr) (int, error)
	local  net.Addr
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	changed  chan struct{} // closed and replaced when the deadline changes
}

func newQueueConn(depth int, local net.Addr, write func([]byte, net.Addr) (int, error)) *queueConn {
	return &queueConn{
		in:      make(chan queuedPacket, depth),
		write:   write,
		local:   local,
		closed:  make(chan struct{}),
		changed: make(chan struct{}),
	}
}

// deliver queues a packet, taking ownership of buf. A full queue drops the
// packet, as a full socket buffer would; QUIC recovers.
func (c *queueConn) deliver(buf *[]byte, n int, addr net.Addr) {
	select {
	case c.in <- queuedPacket{buf, n, addr}:
	default:
		packetBufs.Put(buf)
	}
}

func (c *queueConn) ReadFrom(p []byte) (int, net.Addr, error) {
	pkt, err := c.next()
	if err != nil {
		return 0, nil, err
	}
	return c.take(p, pkt)
}

// next waits for a packet, until the conn closes or the read deadline.
func (c *queueConn) next() (queuedPacket, error) {
	for {
		select {
		case <-c.closed:
			return queuedPacket{}, net.ErrClosed
		default:
		}
		c.mu.Lock()
		deadline, changed := c.deadline, c.changed
		c.mu.Unlock()
		// Fast path: a packet is waiting, no timer needed.
		select {
		case pkt := <-c.in:
			return pkt, nil
		default:
		}
		var timer *time.Timer
		var timeout <-chan time.Time
		if !deadline.IsZero() {
			d := time.Until(deadline)
			if d <= 0 {
				return queuedPacket{}, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		select {
		case pkt := <-c.in:
			stopTimer(timer)
			return pkt, nil
		case <-c.closed:
			stopTimer(timer)
			return queuedPacket{}, net.ErrClosed
		case <-timeout:
			return queuedPacket{}, os.ErrDeadlineExceeded
		case <-changed:
			stopTimer(timer)
		}
	}
}

func (c *queueConn) take(p []byte, pkt queuedPacket) (int, net.Addr, error) {
	n := copy(p, (*pkt.buf)[:pkt.n])
	packetBufs.Put(pkt.buf)
	return n, pkt.addr, nil
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func (c *queueConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	return c.write(p, addr)
}

func (c *queueConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *queueConn) LocalAddr() net.Addr { return c.local }

func (c *queueConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *queueConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	close(c.changed)
	c.changed = make(chan struct{})
	c.mu.Unlock()
	return nil
}

// Writes never block for long (a UDP send), so there is no write deadline.
func (c *queueConn) SetWriteDeadline(time.Time) error { return nil }

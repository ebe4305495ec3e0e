package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
)

// FrameHandler receives the relay frames (packets whose first byte has its
// two top bits clear) that arrive on a Socket. It runs on the socket's one
// reader goroutine; b is valid only until it returns.
type FrameHandler func(b []byte, from netip.AddrPort)

// Socket is a node's UDP socket. QUIC packets go to the outer QUIC
// transport, which runs on PacketConn; relay frames go to the FrameHandler.
// Sharing one socket matters: the NAT mapping that carries the node's
// connection to its relay is the one relayed and (later) punched traffic
// uses too.
type Socket struct {
	udp   *net.UDPConn
	outer *queueConn
	frame FrameHandler
	done  chan struct{}
	once  sync.Once

	// Queued sends (Send): a writer goroutine batches them into GSO
	// sendmsg calls.
	out     chan outPacket
	closing chan struct{}
	wdone   chan struct{}
	gsoOff  atomic.Bool
	gro     bool
}

type outPacket struct {
	buf *[]byte
	n   int
	to  netip.AddrPort
}

// ListenSocket opens a UDP socket on addr ("127.0.0.1:0", ":7443", …) and
// starts its reader. frame may be nil (frames are then dropped).
func ListenSocket(addr string, frame FrameHandler) (*Socket, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("resolve listen address %q: %w", addr, err)
	}
	udp, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	// Bigger buffers absorb bursts; the kernel caps them at its maximum.
	_ = udp.SetReadBuffer(8 << 20)
	_ = udp.SetWriteBuffer(8 << 20)
	quietQUICBufferWarning()
	s := &Socket{udp: udp, frame: frame, done: make(chan struct{}),
		out: make(chan outPacket, 1024), closing: make(chan struct{}), wdone: make(chan struct{})}
	s.outer = newQueueConn(512, udp.LocalAddr(), func(b []byte, a net.Addr) (int, error) {
		return udp.WriteTo(b, a)
	})
	s.gro = enableGRO(udp)
	go s.read()
	go s.write()
	return s, nil
}

// quic-go complains when it cannot size the receive buffer of a conn that
// is not a *net.UDPConn. All of ours are virtual conns fed from a real
// socket whose buffers were sized above, so the warning says nothing true.
func quietQUICBufferWarning() {
	if os.Getenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING") == "" {
		os.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	}
}

func (s *Socket) read() {
	defer close(s.done)
	size := packetBufSize
	if s.gro {
		size = 1 << 16
	}
	buf := make([]byte, size)
	oob := make([]byte, groOOBSize)
	for {
		n, seg, from, err := readGRO(s.udp, buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.outer.Close()
				return
			}
			continue // e.g. ICMP-induced errors on an unconnected socket
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		var ua *net.UDPAddr
		for b := buf[:n]; len(b) > 0; {
			d := b[:min(seg, len(b))]
			b = b[len(d):]
			if d[0]&0xc0 == 0 {
				if s.frame != nil {
					s.frame(d, from)
				}
				continue
			}
			if len(d) > packetBufSize {
				continue // larger than any packet we take; QUIC drops it anyway
			}
			if ua == nil {
				ua = net.UDPAddrFromAddrPort(from)
			}
			bp := packetBufs.Get().(*[]byte)
			m := copy(*bp, d)
			s.outer.deliver(bp, m, ua)
		}
	}
}

// Send queues one datagram (the first n bytes of *buf, which Send takes
// over) to be written by the socket's writer, which batches consecutive
// datagrams to one address into one GSO write. It blocks while the queue
// is full, as a full socket buffer would, and drops the datagram once the
// socket is closed.
func (s *Socket) Send(buf *[]byte, n int, to netip.AddrPort) {
	select {
	case s.out <- outPacket{buf, n, to}:
	case <-s.closing:
		packetBufs.Put(buf)
	}
}

// maxBatch bounds one GSO write: the kernel takes at most 64 segments and
// 64 KiB.
const maxBatch = 64

func (s *Socket) write() {
	defer close(s.wdone)
	batch := make([]byte, 0, 1<<16)
	var pending []outPacket
	flush := func() {
		if len(pending) == 0 {
			return
		}
		defer func() {
			for _, p := range pending {
				packetBufs.Put(p.buf)
			}
			pending = pending[:0]
		}()
		to, seg := pending[0].to, pending[0].n
		if len(pending) > 1 && !s.gsoOff.Load() {
			batch = batch[:0]
			for _, p := range pending {
				batch = append(batch, (*p.buf)[:p.n]...)
			}
			err := writeGSO(s.udp, batch, seg, to)
			if err == nil || !gsoUnsupported(err) {
				return // a lost datagram is QUIC's to repair
			}
			s.gsoOff.Store(true)
		}
		for _, p := range pending {
			_, _ = s.udp.WriteToUDPAddrPort((*p.buf)[:p.n], p.to)
		}
	}
	for {
		var p outPacket
		select {
		case p = <-s.out:
		case <-s.closing:
			return
		}
		pending = append(pending, p)
		size := p.n
		// Take what else is already queued; a run ends at another address,
		// another size, after a shorter datagram (GSO's last segment may be
		// short, no other), or at the batch limits.
	drain:
		for len(pending) < maxBatch {
			select {
			case q := <-s.out:
				first := pending[0]
				last := pending[len(pending)-1]
				if q.to != first.to || q.n > first.n || last.n < first.n || size+q.n > cap(batch) {
					flush()
					size = 0
				}
				pending = append(pending, q)
				size += q.n
			default:
				break drain
			}
		}
		flush()
	}
}

// PacketConn is the conn the outer QUIC transport runs on.
func (s *Socket) PacketConn() net.PacketConn { return s.outer }

// WriteTo sends one raw datagram (a relay frame) from the socket.
func (s *Socket) WriteTo(b []byte, to netip.AddrPort) error {
	_, err := s.udp.WriteToUDPAddrPort(b, to)
	return err
}

// LocalAddr is the socket's bound address.
func (s *Socket) LocalAddr() netip.AddrPort {
	return s.udp.LocalAddr().(*net.UDPAddr).AddrPort()
}

// Close closes the socket and waits for its reader and writer to stop.
func (s *Socket) Close() error {
	var err error
	s.once.Do(func() {
		close(s.closing)
		<-s.wdone
		err = s.udp.Close()
		<-s.done
		s.outer.Close()
	})
	return err
}

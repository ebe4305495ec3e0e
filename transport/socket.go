package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
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
	s := &Socket{udp: udp, frame: frame, done: make(chan struct{})}
	s.outer = newQueueConn(512, udp.LocalAddr(), func(b []byte, a net.Addr) (int, error) {
		return udp.WriteTo(b, a)
	})
	go s.read()
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
	for {
		bp := packetBufs.Get().(*[]byte)
		n, from, err := s.udp.ReadFromUDPAddrPort(*bp)
		if err != nil {
			packetBufs.Put(bp)
			if errors.Is(err, net.ErrClosed) {
				s.outer.Close()
				return
			}
			continue // e.g. ICMP-induced errors on an unconnected socket
		}
		if n == 0 {
			packetBufs.Put(bp)
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		b := (*bp)[:n]
		if b[0]&0xc0 == 0 {
			if s.frame != nil {
				s.frame(b, from)
			}
			packetBufs.Put(bp)
			continue
		}
		s.outer.deliver(bp, n, net.UDPAddrFromAddrPort(from))
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

// Close closes the socket and waits for its reader to stop.
func (s *Socket) Close() error {
	var err error
	s.once.Do(func() {
		err = s.udp.Close()
		<-s.done
		s.outer.Close()
	})
	return err
}

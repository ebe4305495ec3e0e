package transport

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// FrameHandler receives the relay frames (packets whose first byte has its
// two top bits clear) that arrive on a Socket, a run at a time: run holds
// one or more datagrams from one sender, each seg bytes but the last, which
// may be shorter — what one GRO read returned. It runs on the socket's one
// reader goroutine and may rewrite run in place (the relay does, to
// forward it with one write); run is valid only until it returns.
type FrameHandler func(run []byte, seg int, from netip.AddrPort)

// Socket is a node's UDP socket. QUIC packets go to the outer QUIC
// transport, which runs on PacketConn; relay frames go to the FrameHandler.
// Sharing one socket matters: the NAT mapping that carries the node's
// connection to its relay is the one relayed and (later) punched traffic
// uses too.
type Socket struct {
	udp   *net.UDPConn
	outer *queueConn
	frame lendingHandler
	done  chan struct{}
	once  sync.Once

	gsoOff atomic.Bool // set once the kernel refused a GSO write
	gro    bool
	blocks *blockPool // what the reader reads into (rxblock.go)
	io     *udpIO     // its sends and receives (udpio_linux.go)
	tx     *txQueue   // its sender (txqueue.go); nil (the relay's): every send is written at once

	// Destinations a GSO write was too big for: until when to send
	// datagrams of that size or more to them one at a time (writeRun).
	// nSmall counts them, so that the common case takes no lock.
	smallMu sync.Mutex
	small   map[netip.AddrPort]smallPath
	nSmall  atomic.Int32
}

// lendingHandler is a FrameHandler that may also keep parts of run past
// its return: blk, when not nil, is the read's buffer, which it may lend
// to what it keeps (rxblock.go).
type lendingHandler func(run []byte, seg int, from netip.AddrPort, blk *rxBlock)

// lendless makes a FrameHandler a lendingHandler that never borrows.
func lendless(frame FrameHandler) lendingHandler {
	if frame == nil {
		return nil
	}
	return func(run []byte, seg int, from netip.AddrPort, _ *rxBlock) { frame(run, seg, from) }
}

// smallPath is a destination whose path MTU, as the kernel knows it, is
// below datagrams of size bytes.
type smallPath struct {
	until time.Time
	size  int
}

// ListenSocket opens a UDP socket on addr ("127.0.0.1:0", ":7443", …) and
// starts its reader. frame may be nil (frames are then dropped).
func ListenSocket(addr string, frame FrameHandler) (*Socket, error) {
	return listenSocket(addr, lendless(frame), true)
}

// listenSocket is ListenSocket with a handler that may borrow the read's
// buffer (the node's), and a sender (txqueue.go) only if sender is set:
// the relay forwards on its reader and sends nothing else in runs, so a
// sender would only sit parked.
func listenSocket(addr string, frame lendingHandler, sender bool) (*Socket, error) {
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
	uio, err := newUDPIO(udp)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("listen udp %s: %w", addr, err)
	}
	s := &Socket{udp: udp, io: uio, frame: frame, done: make(chan struct{})}
	s.outer = newQueueConn(512, udp.LocalAddr(), func(b []byte, a net.Addr) (int, error) {
		return udp.WriteTo(b, a)
	})
	s.gro = enableGRO(udp)
	size := packetBufSize
	if s.gro {
		size = 1 << 16 // a GRO run
	}
	s.blocks = newBlockPool(size)
	if sender {
		s.tx = newTxQueue(s.writeRun)
	}
	go s.read()
	return s, nil
}

// listenProbeSocket opens one of the extra sockets of a hard-NAT attempt
// (hardnat.go) on network's unspecified address and a new port. It takes
// relay frames only: no outer QUIC transport runs on it, so other packets
// are dropped, and it keeps the kernel's default buffers and no GRO, so
// that many of them cost little.
func listenProbeSocket(network string, frame FrameHandler) (*Socket, error) {
	udp, err := net.ListenUDP(network, nil)
	if err != nil {
		return nil, fmt.Errorf("listen probe socket: %w", err)
	}
	uio, err := newUDPIO(udp)
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("listen probe socket: %w", err)
	}
	s := &Socket{udp: udp, io: uio, frame: lendless(frame), blocks: newBlockPool(packetBufSize), done: make(chan struct{})}
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
	blocks := s.blocks
	blk := blocks.get()
	oob := make([]byte, groOOBSize)
	rd := s.io.reader()
	for ; ; blk = blocks.done(blk) {
		buf := blk.b
		n, seg, from, err := rd.readGRO(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				if s.outer != nil {
					s.outer.Close()
				}
				return
			}
			continue // e.g. ICMP-induced errors on an unconnected socket
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		var ua *net.UDPAddr
		lend := blk
		if !blocks.lendable(n) {
			lend = nil
		}
		for off := 0; off < n; {
			end, frames := nextPiece(buf[:n], off, seg)
			if frames {
				if s.frame != nil {
					s.frame(buf[off:end], seg, from, lend)
				}
				off = end
				continue
			}
			d := buf[off:end]
			off = end
			if len(d) > packetBufSize || s.outer == nil {
				continue // larger than any packet we take, or no QUIC here
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

// nextPiece cuts what one read returned into the pieces read hands on: b
// holds datagrams of one sender, each seg bytes but the last, which may be
// shorter (a GRO read; seg is len(b) for a single datagram, and never below
// 1 for a non-empty read). The piece starting at off, a datagram boundary,
// ends at end, the next boundary it covers. It is either one QUIC packet
// (frames false), or a run of relay frames (frames true): this datagram and
// every frame right after it, up to the next QUIC packet or the end of b —
// what the FrameHandler takes in one call.
//
// It is read's loop body apart from the socket, so that the fuzzer can
// check the cutting (FuzzNextPiece); read's behaviour is unchanged.
func nextPiece(b []byte, off, seg int) (end int, frames bool) {
	end = min(off+seg, len(b))
	if b[off]&0xc0 != 0 {
		return end, false
	}
	for end < len(b) && b[end]&0xc0 == 0 {
		end = min(end+seg, len(b))
	}
	return end, true
}

// maxBatch bounds one GSO write: the kernel takes at most 64 segments.
const maxBatch = 64

// segBufs hold the runs of framed datagrams WriteSegments builds.
var segBufs = sync.Pool{New: func() any { b := make([]byte, 0, maxRunBytes); return &b }}

// maxRunBytes bounds one GSO write below the 64 KiB limit of a UDP
// datagram, which the kernel applies to the whole run.
const maxRunBytes = 65000

// WriteSegments sends each seg-byte piece of b (the last may be shorter)
// as one datagram to to, with hdr before it, in as few writes as the kernel
// allows. Runs of more than one datagram go to the socket's sender, which
// writes them after what is queued already and merges what queues up
// (txqueue.go). It is safe for concurrent use. Errors are dropped: a lost
// datagram is for QUIC to repair.
func (s *Socket) WriteSegments(hdr, b []byte, seg int, to netip.AddrPort) {
	dgram := len(hdr) + seg
	if seg <= 0 || dgram > maxRunBytes {
		return
	}
	per := min(maxBatch, maxRunBytes/dgram)
	for len(b) > 0 {
		bp := segBufs.Get().(*[]byte)
		run := (*bp)[:0]
		k := 0
		for ; k < per && len(b) > 0; k++ {
			d := b[:min(seg, len(b))]
			b = b[len(d):]
			run = append(run, hdr...)
			run = append(run, d...)
		}
		if k > 1 && s.tx != nil {
			s.tx.put(txRun{buf: bp, run: run, dgram: dgram, k: k, to: to})
			continue
		}
		s.sendRun(run, dgram, k, to)
		segBufs.Put(bp)
	}
}

// sendRun writes run (as writeRun) now, or behind what the sender holds.
func (s *Socket) sendRun(run []byte, dgram, k int, to netip.AddrPort) {
	if !s.behind(run, dgram, k, to) {
		s.writeRun(run, dgram, k, to)
	}
}

// behind queues a copy of run behind the runs the sender has queued or in
// hand, if it has any, and says whether it did: a send written at once
// then would overtake what was sent before it.
func (s *Socket) behind(run []byte, dgram, k int, to netip.AddrPort) bool {
	if s.tx == nil || !s.tx.busy() {
		return false
	}
	s.tx.putCopy(run, dgram, k, to)
	return true
}

// writeRun sends run, k datagrams of dgram bytes (the last may be
// shorter), with one GSO write when it can.
func (s *Socket) writeRun(run []byte, dgram, k int, to netip.AddrPort) {
	if k > 1 && !s.gsoOff.Load() && !s.tooBig(to, dgram) {
		err := s.io.send(run, dgram, to)
		switch {
		case err == nil:
			return
		case gsoTooBig(err):
			// The path MTU the kernel knows for to (a 1280-byte link
			// on the way, learned from ICMP) is below our datagrams.
			// GSO cannot fragment, plain sends can: this run and the
			// next ones of datagrams as large to to go one by one.
			s.markSmallPath(to, dgram)
		case gsoUnsupported(err):
			s.gsoOff.Store(true)
		default:
			return // a lost datagram is QUIC's to repair
		}
	}
	for len(run) > 0 {
		d := run[:min(dgram, len(run))]
		run = run[len(d):]
		_ = s.io.send(d, 0, to)
	}
}

// tooBig says whether the kernel refused a GSO write of dgram-byte
// datagrams to to, or of smaller ones, within smallPathFor.
func (s *Socket) tooBig(to netip.AddrPort, dgram int) bool {
	if s.nSmall.Load() == 0 {
		return false
	}
	s.smallMu.Lock()
	defer s.smallMu.Unlock()
	sp, ok := s.small[to]
	if ok && time.Now().After(sp.until) {
		delete(s.small, to)
		s.nSmall.Store(int32(len(s.small)))
		return false
	}
	return ok && dgram >= sp.size
}

func (s *Socket) markSmallPath(to netip.AddrPort, dgram int) {
	s.smallMu.Lock()
	defer s.smallMu.Unlock()
	if s.small == nil || len(s.small) >= 4096 {
		s.small = make(map[netip.AddrPort]smallPath) // bounded: forget all, relearn
	}
	size := dgram
	if sp, ok := s.small[to]; ok && sp.size < size {
		size = sp.size
	}
	s.small[to] = smallPath{until: time.Now().Add(smallPathFor), size: size}
	s.nSmall.Store(int32(len(s.small)))
}

// PacketConn is the conn the outer QUIC transport runs on.
func (s *Socket) PacketConn() net.PacketConn { return s.outer }

// WriteTo sends one raw datagram (a relay frame) from the socket: at once,
// or behind the runs the sender has queued (behind). An error comes back
// only from a datagram written at once.
func (s *Socket) WriteTo(b []byte, to netip.AddrPort) error {
	if s.behind(b, len(b), 1, to) {
		return nil
	}
	return s.io.send(b, 0, to)
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
		if s.tx != nil {
			s.tx.close() // its write in hand, if any, fails at once now
		}
		<-s.done
		if s.outer != nil {
			s.outer.Close()
		}
	})
	return err
}

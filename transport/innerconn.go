package transport

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/ipv4"
)

// innerConn is the net.PacketConn a node's end-to-end QUIC transport runs
// on. To quic-go it looks like a UDP socket with offloads: it satisfies
// quic.OOBCapablePacketConn and quic-go's batch-read interface (ReadBatch),
// so quic-go packs a run of packets to one peer into one buffer with a
// segment size, as for UDP GSO, and takes received packets eight at a
// time. That matters for speed: handed over one by one, every packet
// crossed goroutines twice (quic-go's send queue, then the socket's
// writer); a run now crosses once, and leaves in one sendmsg on quic-go's
// send goroutine (BENCHMARKS.md has the before and after).
//
// Underneath, a peer is an Endpoint (EndpointAddr), not a UDP address:
// writes go to send, which takes the peer's direct path or its relay for
// the whole run and frames each packet for it; reads come from the queue
// the socket's reader fills.
//
// SyscallConn is that of a probe socket (openProbe), which carries no
// traffic: quic-go's capability probes ask it whether this kernel
// segments (what decides GSO), and the options they set — DF, TOS
// reception — land there and not on the real socket. On the real socket DF
// (IP_PMTUDISC_PROBE) would turn the kernel's fragmentation of our
// 1437-byte IPv4 packets on a smaller-MTU interface (a 1280-byte WireGuard
// or Tailscale link) into send errors, and every packet would be lost.
type innerConn struct {
	*queueConn
	sock   *Socket
	probe  *net.UDPConn
	local  *net.UDPAddr
	send   func(ep Endpoint, b []byte, seg int)
	credit *rxCredit
}

// Without this quic-go would quietly fall back to one packet per write.
var _ quic.OOBCapablePacketConn = (*innerConn)(nil)

func newInnerConn(sock *Socket, self Endpoint, send func(Endpoint, []byte, int)) (*innerConn, error) {
	probe, err := openProbe()
	if err != nil {
		return nil, fmt.Errorf("open probe socket: %w", err)
	}
	local := EndpointAddr(self)
	return &innerConn{queueConn: newQueueConn(4096, local, nil), sock: sock, probe: probe, local: local, send: send,
		credit: newRxCredit()}, nil
}

// WriteTo sends one packet.
func (c *innerConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	return c.write(b, len(b), addr)
}

// WriteMsgUDP sends b, which holds packets of the size the UDP_SEGMENT
// control message in oob gives (the last may be shorter), or one packet.
// Other control messages (ECN marks) are ignored: the packets are framed
// anew, and the marks would not survive a relay anyway.
func (c *innerConn) WriteMsgUDP(b, oob []byte, addr *net.UDPAddr) (int, int, error) {
	seg := segmentSize(oob)
	if seg <= 0 || seg > len(b) {
		seg = len(b)
	}
	n, err := c.write(b, seg, addr)
	return n, len(oob), err
}

// write never fails for a packet that cannot be delivered: like a UDP send
// into a network without a route, the packet is dropped and QUIC repairs
// the loss. quic-go closes the connection on any write error.
func (c *innerConn) write(b []byte, seg int, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	ep, ok := AddrEndpoint(addr)
	if !ok || len(b) == 0 {
		return len(b), nil
	}
	c.send(ep, b, seg)
	c.credit.wrote()
	return len(b), nil
}

// ReadBatch waits for one packet, then takes as many more as are queued
// and fit in ms. A peer whose connection has not taken what it was handed,
// or that had its turn while others send, is held back meanwhile, and the
// other peers' packets go first (rxcredit.go).
func (c *innerConn) ReadBatch(ms []ipv4.Message, _ int) (int, error) {
	if len(ms) == 0 {
		return 0, nil
	}
	c.readMu.Lock()
	defer c.readMu.Unlock()
	c.yield()
	for {
		n, holding, err := c.fill(ms)
		if err != nil {
			return 0, err
		}
		if n > 0 {
			c.queued.Add(int32(-n))
			c.inRow += n
			return n, nil
		}
		// Nothing to hand over: wait for packets, or, while a peer is
		// held back, for its connection to catch up.
		var progress <-chan struct{}
		var wake time.Duration
		if holding {
			progress, wake = c.credit.progress, creditWake
		}
		if err := c.await(progress, wake); err != nil {
			if errors.Is(err, net.ErrClosed) {
				c.credit.drop()
			}
			return 0, err
		}
	}
}

// fill puts into ms, without waiting, the held packets that may go now,
// then queued ones, keeping back those of held peers; it reports whether
// any packet is still held. The caller holds readMu.
func (c *innerConn) fill(ms []ipv4.Message) (n int, holding bool, err error) {
	select {
	case <-c.closed:
		c.credit.drop()
		return 0, false, net.ErrClosed
	default:
	}
	var rel releaser
	defer rel.flush()
	r := c.credit
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches++
	for {
		if len(r.holds) > 0 {
			n += r.release(ms[n:], &rel)
		}
		for n < len(ms) {
			pkt, ok := c.poll()
			if !ok {
				break
			}
			switch r.admit(pkt) {
			case admitHand:
				putMessage(&ms[n], pkt, &rel)
				n++
			case admitDrop:
				rel.release(pkt)
				c.queued.Add(-1)
			}
		}
		// Looked through the whole queue: peers that had their turn go
		// on, now or at the next batch.
		if n == len(ms) || !r.endTurns() {
			break
		}
	}
	r.waiting.Store(r.nheld > 0)
	return n, r.nheld > 0, nil
}

// putMessage copies pkt into m and gives its buffer back.
func putMessage(m *ipv4.Message, pkt queuedPacket, rel *releaser) {
	m.N, m.Addr = copy(m.Buffers[0], pkt.b), pkt.addr
	m.NN, m.Flags = 0, 0
	rel.release(pkt)
}

// ReadFrom reads one packet the way ReadBatch does, so that a peer's
// packets keep their order; quic-go reads with ReadBatch.
func (c *innerConn) ReadFrom(b []byte) (int, net.Addr, error) {
	ms := []ipv4.Message{{Buffers: [][]byte{b}}}
	if _, err := c.ReadBatch(ms, 0); err != nil {
		return 0, nil, err
	}
	return ms[0].N, ms[0].Addr, nil
}

// ReadMsgUDP reads one packet; quic-go reads with ReadBatch, this is for
// the interface.
func (c *innerConn) ReadMsgUDP(b, _ []byte) (n, oobn, flags int, addr *net.UDPAddr, err error) {
	n, a, err := c.ReadFrom(b)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	ua, _ := a.(*net.UDPAddr)
	return n, 0, 0, ua, nil
}

func (c *innerConn) LocalAddr() net.Addr { return c.local }

func (c *innerConn) SyscallConn() (syscall.RawConn, error) { return c.probe.SyscallConn() }

// Close closes the conn and its probe socket.
func (c *innerConn) Close() error {
	c.queueConn.Close()
	return c.probe.Close()
}

// SetReadBuffer does nothing: the socket sized its own buffers.
func (c *innerConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer does nothing, as SetReadBuffer.
func (c *innerConn) SetWriteBuffer(int) error { return nil }

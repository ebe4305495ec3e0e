//go:build linux

// Command nfdelay delays the packets an iptables NFQUEUE rule hands it, as a
// stand-in for netem on kernels without sch_netem. It speaks nfnetlink_queue
// over a raw netlink socket with nothing but the standard library. Run it
// inside the network namespace that has the rule; start it before adding the
// rule and remove the rule before stopping it:
//
//	ip netns exec NS nfdelay -queue 0 -delay 25ms &   # says "nfdelay: ready" when bound
//	ip netns exec NS iptables -t mangle -A FORWARD -j NFQUEUE --queue-num 0
//
// Every packet is held for -delay and then accepted, in arrival order (a
// constant delay never reorders). Loss is iptables' job (-m statistic). On
// SIGTERM or SIGINT it accepts what it still holds at once and exits 0.
//
// The test harness in test/e2e builds and runs it (Topology.AddLossDelay).
package main

import (
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// nfnetlink_queue, from <linux/netfilter/nfnetlink_queue.h>.
const (
	nfnlSubsysQueue = 3

	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1 // struct nfqnl_msg_packet_hdr { __be32 id; __be16 proto; __u8 hook; }
	nfqaVerdictHdr = 2 // struct nfqnl_msg_verdict_hdr { __be32 verdict; __be32 id; }

	nfqaCfgCmd         = 1 // struct nfqnl_msg_config_cmd { __u8 cmd; __u8 pad; __be16 pf; }
	nfqaCfgParams      = 2 // struct nfqnl_msg_config_params { __be32 copy_range; __u8 copy_mode; }
	nfqaCfgQueueMaxlen = 3 // __be32

	nfqnlCfgCmdBind   = 1
	nfqnlCfgCmdUnbind = 2
	nfqnlCopyMeta     = 1

	nfAccept = 1

	solNetlink       = 270
	netlinkNoENOBUFS = 5

	nlmsgHdrLen = 16
	nfgenMsgLen = 4
)

type options struct {
	queue  uint16
	delay  time.Duration
	maxLen uint32
}

func main() {
	var o options
	q := flag.Uint("queue", 0, "NFQUEUE number (iptables --queue-num)")
	flag.DurationVar(&o.delay, "delay", 0, "how long to hold each packet")
	maxLen := flag.Uint("maxlen", 16384, "kernel queue length (packets beyond it are dropped)")
	flag.Parse()
	if *q > 65535 || o.delay < 0 || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "nfdelay: usage: nfdelay [-queue N] [-delay D] [-maxlen N]")
		os.Exit(2)
	}
	o.queue, o.maxLen = uint16(*q), uint32(*maxLen)
	if err := run(o); err != nil {
		fmt.Fprintf(os.Stderr, "nfdelay: %v\n", err)
		os.Exit(1)
	}
}

// held is a packet waiting for its verdict.
type held struct {
	id  uint32
	due time.Time
}

func run(o options) error {
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_RAW|syscall.SOCK_CLOEXEC, syscall.NETLINK_NETFILTER)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return fmt.Errorf("netlink bind: %w", err)
	}
	// Room for bursts; a full socket buffer would drop packets in the kernel.
	_ = syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 8<<20)
	_ = syscall.SetsockoptInt(fd, solNetlink, netlinkNoENOBUFS, 1)
	// Wake up regularly to notice signals.
	tv := syscall.NsecToTimeval(int64(200 * time.Millisecond))
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}

	nl := &conn{fd: fd, queue: o.queue}
	// A queue left bound by a dead process cannot exist (binding dies with
	// its socket), so bind directly.
	if err := nl.config(attr(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, 0})); err != nil {
		return fmt.Errorf("bind queue %d: %w (is another nfdelay bound to it?)", o.queue, err)
	}
	params := make([]byte, 5)
	binary.BigEndian.PutUint32(params[0:4], 0) // copy no payload
	params[4] = nfqnlCopyMeta
	maxlen := binary.BigEndian.AppendUint32(nil, o.maxLen)
	if err := nl.config(append(attr(nfqaCfgParams, params), attr(nfqaCfgQueueMaxlen, maxlen)...)); err != nil {
		return fmt.Errorf("configure queue %d: %w", o.queue, err)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	var stopping atomic.Bool
	go func() {
		<-sigs
		stopping.Store(true)
	}()

	var seen, verdictErrs atomic.Int64
	pending := make(chan held, o.maxLen+1024)
	flushed := make(chan struct{})
	go func() { // the only sender of accept verdicts, in arrival order
		defer close(flushed)
		for h := range pending {
			if !stopping.Load() {
				if d := time.Until(h.due); d > 0 {
					time.Sleep(d)
				}
			}
			if err := nl.verdict(h.id, nfAccept); err != nil {
				verdictErrs.Add(1)
			}
		}
	}()

	fmt.Fprintf(os.Stderr, "nfdelay: ready queue=%d delay=%s\n", o.queue, o.delay)
	buf := make([]byte, 1<<16)
	var readErr error
	for !stopping.Load() {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		now := time.Now()
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ENOBUFS) {
				continue
			}
			readErr = fmt.Errorf("recv: %w", err)
			break
		}
		for _, id := range packetIDs(buf[:n]) {
			seen.Add(1)
			pending <- held{id: id, due: now.Add(o.delay)}
		}
	}
	stopping.Store(true)
	// Whatever the kernel queued meanwhile is accepted at once rather than
	// dropped when the socket closes.
	for {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			break // EAGAIN: nothing arrived within SO_RCVTIMEO
		}
		for _, id := range packetIDs(buf[:n]) {
			seen.Add(1)
			pending <- held{id: id}
		}
	}
	close(pending)
	<-flushed
	_ = nl.config(attr(nfqaCfgCmd, []byte{nfqnlCfgCmdUnbind, 0, 0, 0}))
	fmt.Fprintf(os.Stderr, "nfdelay: packets=%d verdict-errors=%d\n", seen.Load(), verdictErrs.Load())
	return readErr
}

// conn is the netlink socket bound to one queue.
type conn struct {
	fd    int
	queue uint16
	seq   atomic.Uint32
}

// message builds nlmsghdr + nfgenmsg + attributes.
func (c *conn) message(msgType uint16, flags uint16, attrs []byte) []byte {
	b := make([]byte, nlmsgHdrLen+nfgenMsgLen, nlmsgHdrLen+nfgenMsgLen+len(attrs))
	b = append(b, attrs...)
	binary.NativeEndian.PutUint32(b[0:4], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:6], nfnlSubsysQueue<<8|msgType)
	binary.NativeEndian.PutUint16(b[6:8], flags)
	binary.NativeEndian.PutUint32(b[8:12], c.seq.Add(1))
	// pid 0: the kernel fills in ours. nfgenmsg: AF_UNSPEC, NFNETLINK_V0, queue.
	binary.BigEndian.PutUint16(b[18:20], c.queue)
	return b
}

func (c *conn) send(b []byte) error {
	for {
		err := syscall.Sendto(c.fd, b, 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK})
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		return err
	}
}

// config sends a config message and waits for the kernel's acknowledgement.
func (c *conn) config(attrs []byte) error {
	msg := c.message(nfqnlMsgConfig, syscall.NLM_F_REQUEST|syscall.NLM_F_ACK, attrs)
	seq := binary.NativeEndian.Uint32(msg[8:12])
	if err := c.send(msg); err != nil {
		return err
	}
	buf := make([]byte, 1<<16)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := syscall.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
				continue
			}
			return err
		}
		for b := buf[:n]; len(b) >= nlmsgHdrLen; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < nlmsgHdrLen || l > len(b) {
				break
			}
			typ := binary.NativeEndian.Uint16(b[4:6])
			if typ == syscall.NLMSG_ERROR && binary.NativeEndian.Uint32(b[8:12]) == seq && l >= nlmsgHdrLen+4 {
				if errno := int32(binary.NativeEndian.Uint32(b[16:20])); errno != 0 {
					return syscall.Errno(-errno)
				}
				return nil
			}
			b = b[align4(l):]
		}
	}
	return errors.New("no acknowledgement from the kernel")
}

func (c *conn) verdict(id uint32, verdict uint32) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint32(v[0:4], verdict)
	binary.BigEndian.PutUint32(v[4:8], id)
	return c.send(c.message(nfqnlMsgVerdict, syscall.NLM_F_REQUEST, attr(nfqaVerdictHdr, v)))
}

// packetIDs returns the packet IDs of the queued-packet messages in b.
func packetIDs(b []byte) []uint32 {
	var ids []uint32
	for len(b) >= nlmsgHdrLen {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < nlmsgHdrLen || l > len(b) {
			break
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		if typ == nfnlSubsysQueue<<8|nfqnlMsgPacket && l >= nlmsgHdrLen+nfgenMsgLen {
			for a := b[nlmsgHdrLen+nfgenMsgLen : l]; len(a) >= 4; {
				al := int(binary.NativeEndian.Uint16(a[0:2]))
				at := binary.NativeEndian.Uint16(a[2:4]) & 0x3fff // without NLA_F_NESTED/NET_BYTEORDER
				if al < 4 || al > len(a) {
					break
				}
				if at == nfqaPacketHdr && al >= 4+4 {
					ids = append(ids, binary.BigEndian.Uint32(a[4:8]))
					break
				}
				a = a[min(align4(al), len(a)):]
			}
		}
		b = b[min(align4(l), len(b)):]
	}
	return ids
}

// attr encodes one netlink attribute, padded to 4 bytes.
func attr(typ uint16, data []byte) []byte {
	b := make([]byte, 4, align4(4+len(data)))
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func align4(n int) int { return (n + 3) &^ 3 }

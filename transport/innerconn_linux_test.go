package transport

import (
	"context"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func getsockopt(c *net.UDPConn, level, opt int) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		return 0, err
	}
	return v, gerr
}

func sockopt(t *testing.T, s *Socket, level, opt int) int {
	t.Helper()
	v, err := getsockopt(s.udp, level, opt)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// quic-go packs runs of packets on the end-to-end conn (its GSO path), and
// its capability probes leave the node's real socket as it was: no DF, no
// TOS reception.
func TestQUICPacksRunsAndLeavesSocketAlone(t *testing.T) {
	probe, err := openProbe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := getsockopt(probe, syscall.IPPROTO_UDP, udpSegment); err != nil {
		t.Skipf("no UDP segmentation offload on this kernel: %v", err)
	}
	probe.Close()
	tn := newTestNet(t)
	dev, cli := tn.node(t), tn.node(t)
	dev.SetMode(PathRelay)
	cli.SetMode(PathRelay)
	var runs atomic.Int64
	send := cli.innerPC.send
	cli.innerPC.send = func(ep Endpoint, b []byte, seg int) {
		if len(b) > seg {
			runs.Add(1)
		}
		send(ep, b, seg)
	}
	const level, opt = syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER
	dfBefore := sockopt(t, cli.sock, level, opt)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	echoOver(t, ctx, dialEcho(t, ctx, cli, dev), 4<<20, "bulk")
	if runs.Load() == 0 {
		t.Error("quic-go wrote no run of packets: its GSO path is off")
	}
	for _, n := range []*Node{cli, dev} {
		if got := sockopt(t, n.sock, level, opt); got != dfBefore {
			t.Errorf("IP_MTU_DISCOVER of a node socket changed to %d (was %d)", got, dfBefore)
		}
		if got := sockopt(t, n.sock, syscall.IPPROTO_IP, syscall.IP_RECVTOS); got != 0 {
			t.Errorf("IP_RECVTOS of a node socket is %d", got)
		}
	}
}

package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

type testNet struct {
	relay     *Relay
	relayAddr netip.AddrPort
}

func newTestNet(t testing.TB) *testNet {
	t.Helper()
	r, err := ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &testNet{relay: r, relayAddr: r.Socket().LocalAddr()}
}

// node starts a node attached to the relay, as the registry would after a
// registration.
func (n *testNet) node(t testing.TB) *Node {
	t.Helper()
	nd := newTestNode(t, "127.0.0.1:0")
	nd.SetRoutes(RelayRoute{Addr: n.relayAddr}, nil)
	detach := n.relay.Attach(nd.Endpoint(), nd.LocalAddr())
	t.Cleanup(detach)
	return nd
}

// newTestNode starts a node of a fresh key on listen, closed when the test
// ends; it is attached to no relay.
func newTestNode(t testing.TB, listen string) *Node {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	nd, err := NewNode(k, listen)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close() })
	return nd
}

// dialEcho starts echoServer on dev and dials dev from cli; the connection
// closes when the test ends.
func dialEcho(t *testing.T, ctx context.Context, cli, dev *Node) *quic.Conn {
	t.Helper()
	echoServer(t, dev)
	conn, err := cli.DialPeer(ctx, dev.Key().ID(), dev.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.CloseWithError(0, "") })
	return conn
}

// echoServer accepts end-to-end connections on nd and echoes every stream.
// Its policy lets every stream in, so it authorizes each connection at its
// first stream, as a device does.
func echoServer(t *testing.T, nd *Node) {
	t.Helper()
	ln, err := nd.ListenPeers()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				for {
					s, err := c.AcceptStream(ctx)
					if err != nil {
						return
					}
					nd.Authorized(c)
					go func() { io.Copy(s, s); s.Close() }()
				}
			}()
		}
	}()
}

// pathModes are the two ways an end-to-end connection runs in these
// tests: through the relay, or direct once both ends proved the path.
var pathModes = []struct {
	name string
	mode PathMode
}{{"relayed", PathRelay}, {"direct", PathAuto}}

// modePair starts two nodes in mode on a fresh relay network and an echo
// connection from cli to dev, authorized by a first echo. In PathAuto it
// returns once both ends send direct: until the device uses the path too,
// what the client receives still comes relayed.
func modePair(t *testing.T, ctx context.Context, mode PathMode) (dev, cli *Node, conn *quic.Conn) {
	t.Helper()
	tn := newTestNet(t)
	dev, cli = tn.node(t), tn.node(t)
	dev.SetMode(mode)
	cli.SetMode(mode)
	conn = dialEcho(t, ctx, cli, dev)
	echoOver(t, ctx, conn, 1<<10, "first")
	if mode == PathAuto {
		if err := cli.WaitDirect(ctx, dev.Endpoint()); err != nil {
			t.Fatal(err)
		}
		if err := dev.WaitDirect(ctx, cli.Endpoint()); err != nil {
			t.Fatal(err)
		}
	}
	return dev, cli, conn
}

// echoOver sends size random bytes on a new stream of conn to an
// echoServer and checks they all come back.
func echoOver(t *testing.T, ctx context.Context, conn *quic.Conn, size int, what string) {
	t.Helper()
	if err := echo(ctx, conn, size); err != nil {
		t.Fatalf("echo %s: %v", what, err)
	}
}

// echo is echoOver for a goroutine other than the test's.
func echo(ctx context.Context, conn *quic.Conn, size int) error {
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	payload := make([]byte, size)
	rand.Read(payload)
	go func() { s.Write(payload); s.Close() }()
	stop := context.AfterFunc(ctx, func() { s.CancelRead(0); s.CancelWrite(0) })
	defer stop()
	got, err := io.ReadAll(s)
	if err != nil || !bytes.Equal(got, payload) {
		return fmt.Errorf("%d of %d bytes back, %v", len(got), size, err)
	}
	return nil
}

func TestRelayCarriesEndToEnd(t *testing.T) {
	tn := newTestNet(t)
	dev, cli := tn.node(t), tn.node(t)
	dev.SetMode(PathRelay)
	cli.SetMode(PathRelay)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn := dialEcho(t, ctx, cli, dev)
	const size = 4 << 20
	echoOver(t, ctx, conn, size, "through the relay")
	if tn.relay.Forwarded.Load() == 0 {
		t.Fatal("relay forwarded nothing: the traffic did not cross it")
	}
	if dev.RelayedIn.Load() < size {
		t.Fatalf("device received %d relayed bytes, want ≥ %d", dev.RelayedIn.Load(), size)
	}
	// The relay forwarded all that on its reader: its socket starts no
	// sender goroutine, where a node's does.
	if tn.relay.sock.tx != nil || dev.sock.tx == nil {
		t.Fatalf("senders: relay %v, node %v; want none and one", tn.relay.sock.tx != nil, dev.sock.tx != nil)
	}
}

// A relay (or registry) that sends a client to another node than the one
// it asked for must not be able to answer for it: the handshake fails.
func TestImpostorFailsHandshake(t *testing.T) {
	tn := newTestNet(t)
	dev, impostor, cli := tn.node(t), tn.node(t), tn.node(t)
	echoServer(t, impostor)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Ask for dev's ID, but the packets reach the impostor's endpoint.
	_, err := cli.DialPeer(ctx, dev.Key().ID(), impostor.Endpoint())
	if err == nil {
		t.Fatal("handshake with an impostor succeeded")
	}
	if !errors.Is(err, ErrPeerMismatch) {
		t.Fatalf("error %v does not wrap ErrPeerMismatch", err)
	}
}

func TestRelayDropsStrangersAndGarbage(t *testing.T) {
	tn := newTestNet(t)
	dev := tn.node(t)
	echoServer(t, dev)
	// A socket that never registered.
	stranger, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	ra := net.UDPAddrFromAddrPort(tn.relayAddr)
	frame := append([]byte{frameToRelay}, make([]byte, 8)...)
	putEP(frame, dev.Endpoint())
	frame = append(frame, bytes.Repeat([]byte{0x42}, 1200)...)
	before := tn.relay.Forwarded.Load()
	for _, b := range [][]byte{frame, {0}, {0x01}, {0x3f, 1, 2}, bytes.Repeat([]byte{0xff}, 1500), {}} {
		stranger.WriteToUDP(b, ra)
	}
	// Nothing comes back to a stranger.
	stranger.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := stranger.ReadFromUDP(make([]byte, 2048)); err == nil {
		t.Fatalf("relay answered a stranger with %d bytes", n)
	}
	if tn.relay.Forwarded.Load() != before {
		t.Fatal("relay forwarded a frame from an unregistered address")
	}
	// The relay still works.
	cli := tn.node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := cli.DialPeer(ctx, dev.Key().ID(), dev.Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	c.CloseWithError(0, "")
}

func TestGoneFrame(t *testing.T) {
	tn := newTestNet(t)
	cli := tn.node(t)
	gone := cli.Gone()
	absent := testEndpoint()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	k, _ := identity.Generate()
	go cli.DialPeer(ctx, k.ID(), absent)
	select {
	case ep := <-gone:
		if ep != absent {
			t.Fatalf("gone for %v, want %v", ep, absent)
		}
	case <-ctx.Done():
		t.Fatal("no gone frame for an endpoint that is not attached")
	}
}

func TestQueueConnDeadline(t *testing.T) {
	c := newQueueConn(1, EndpointAddr(1), func(b []byte, _ net.Addr) (int, error) { return len(b), nil })
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	if _, _, err := c.ReadFrom(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err %v, want deadline", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("deadline not honoured")
	}
	// A deadline set while a read is blocked wakes it.
	done := make(chan error, 1)
	c.SetReadDeadline(time.Time{})
	go func() { _, _, err := c.ReadFrom(make([]byte, 10)); done <- err }()
	time.Sleep(20 * time.Millisecond)
	c.SetReadDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("err %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("blocked read not woken by a new deadline")
	}
	c.Close()
	if _, _, err := c.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("after close: %v", err)
	}
}

func putEP(b []byte, ep Endpoint) {
	for i := 0; i < 8; i++ {
		b[1+i] = byte(uint64(ep) >> (56 - 8*i))
	}
}

// On loopback both nodes' candidates answer at once: the connection that
// started on the relay moves to the direct path once the device let its
// first stream in, and keeps working when the relay is gone.
func TestDirectPathTakesOver(t *testing.T) {
	tn := newTestNet(t)
	dev, cli := tn.node(t), tn.node(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := dialEcho(t, ctx, cli, dev)
	echoOver(t, ctx, conn, 1<<10, "before the switch") // authorizes the connection
	// Each side confirms its own direct path with its own pings.
	if err := cli.WaitDirect(ctx, dev.Endpoint()); err != nil {
		t.Fatal(err)
	}
	if err := dev.WaitDirect(ctx, cli.Endpoint()); err != nil {
		t.Fatal(err)
	}
	peers := cli.Peers()
	if len(peers) != 1 || !peers[0].Direct.IsValid() || peers[0].ID != dev.Key().ID() {
		t.Fatalf("peers %+v, want one direct", peers)
	}
	// Frames sent before the switch may still be on their way through
	// the relay, and a send that chose the relay just before the switch
	// may not have counted its bytes yet: one echo first lets both settle,
	// then what counts is what each node sends from there on.
	echoOver(t, ctx, conn, 1<<10, "just after the switch")
	cb, db := cli.RelayedOut.Load(), dev.RelayedOut.Load()
	echoOver(t, ctx, conn, 1<<20, "on the direct path")
	if c, d := cli.RelayedOut.Load()-cb, dev.RelayedOut.Load()-db; c != 0 || d != 0 {
		t.Fatalf("%d (client) and %d (device) bytes went to the relay on the direct path", c, d)
	}
	tn.relay.Close() // the relay dies
	echoOver(t, ctx, conn, 1<<20, "after the relay died")
}

func TestPathModeRelayNeverDirect(t *testing.T) {
	tn := newTestNet(t)
	dev, cli := tn.node(t), tn.node(t)
	cli.SetMode(PathRelay)
	dev.SetMode(PathRelay)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dialEcho(t, ctx, cli, dev)
	wctx, wcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer wcancel()
	if err := cli.WaitDirect(wctx, dev.Endpoint()); err == nil {
		t.Fatal("relay mode found a direct path")
	}
}

func TestCandidatesWire(t *testing.T) {
	in := []netip.AddrPort{netip.MustParseAddrPort("203.0.113.11:4000"), netip.MustParseAddrPort("[2001:db8::1]:5")}
	got, err := parseCandidates(appendCandidates(nil, in))
	if err != nil || len(got) != 2 || got[0] != in[0] || got[1] != in[1] {
		t.Fatalf("%v %v", got, err)
	}
	b := appendCandidates(nil, in)
	for i := range b {
		if _, err := parseCandidates(b[:i]); err == nil {
			t.Fatalf("truncated at %d accepted", i)
		}
	}
}

func TestDiscoMAC(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	in := discoMsg{typ: frameDiscoPong, src: 1, dst: 2, seq: 3, txid: 4, rcvd: counts{5, 6}}
	b := appendDisco(nil, in, secret)
	m, ok := parseDisco(b)
	if len(b) != discoLen || !ok || m != in || !frameMACValid(b, secret) {
		t.Fatalf("round trip: %d bytes, %+v, %v", len(b), m, ok)
	}
	// Every field is under the MAC, the counts a pong reports included.
	for i := range discoLen - 16 {
		b[i] ^= 1
		if frameMACValid(b, secret) {
			t.Fatalf("accepted with byte %d changed", i)
		}
		b[i] ^= 1
	}
}

package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/transport"
)

// syncBuffer is a log sink the device agent writes from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// realWorld runs, on loopback, a rendezvous node, a device agent
// publishing ports, and the gateway's TunnelDialer with its own key.
func realWorld(t *testing.T, ports []peer.Port) (device identity.ID, dialer *socks.TunnelDialer, deviceLog *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	rkey, _ := identity.Generate()
	relay, err := transport.ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &resolver.Server{Key: rkey, Relay: relay, Presence: resolver.NewMemoryPresence(), Log: zerolog.Nop()}
	wg.Go(func() { srv.Serve(ctx); relay.Close() })
	raddr := resolver.RelayAddr{ID: rkey.ID(), HostPort: relay.Socket().LocalAddr().String()}

	node := func(publishes bool) (*transport.Node, *resolver.Client) {
		k, _ := identity.Generate()
		nd, err := transport.NewNode(k, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		up := make(chan struct{}, 8)
		c := &resolver.Client{Node: nd, Relay: raddr, Publishes: publishes, Log: zerolog.Nop(),
			OnRegistered: func(string) { up <- struct{}{} }}
		wg.Go(func() { c.Run(ctx); nd.Close() })
		select {
		case <-up:
		case <-time.After(ioTimeout):
			t.Fatal("node did not register")
		}
		return nd, c
	}
	dn, _ := node(true)
	deviceLog = &syncBuffer{}
	agent := &peer.Agent{Node: dn, Ports: ports, Log: zerolog.New(deviceLog), DialTimeout: time.Second}
	wg.Go(func() { agent.Serve(ctx) })
	gn, gres := node(false)
	dialer = &socks.TunnelDialer{Node: gn, Resolver: gres, Log: zerolog.Nop()} // no Credential: never any
	t.Cleanup(func() { dialer.Close() })
	return dn.Key().ID(), dialer, deviceLog
}

// TestRealDevice runs both fronts against a real device over end-to-end
// QUIC: public ports are reached, a private one is denied, and every
// stream ends cleanly on the device.
func TestRealDevice(t *testing.T) {
	back := startBackend(t)
	echo := sshLike(t)
	device, dialer, deviceLog := realWorld(t, []peer.Port{
		{Remote: 80, Target: back.Listener.Addr().String(), Access: peer.Public},
		{Remote: 22, Target: echo, Access: peer.Public},
		{Remote: 2222, Target: echo, Access: peer.Private, Allowed: []identity.ID{newID(t)}},
	})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	lim := NewLimiter(DefaultLimits())

	h := &HTTP{Domain: testDomain, Dialer: dialer, Limiter: lim, Log: zerolog.Nop()}
	hln, _ := net.Listen("tcp", "127.0.0.1:0")
	wg.Go(func() {
		if err := h.Serve(ctx, hln, nil); err != nil {
			t.Errorf("HTTP Serve: %v", err)
		}
	})
	s := &SOCKS{Dialer: dialer, Limiter: lim, Log: zerolog.Nop()}
	sln, _ := net.Listen("tcp", "127.0.0.1:0")
	wg.Go(func() {
		if err := s.Serve(ctx, sln); err != nil {
			t.Errorf("SOCKS Serve: %v", err)
		}
	})
	g := &gw{addr: hln.Addr().String(), device: device}
	c := g.client(t, "")

	for i := range 3 {
		res, body := get(t, c, g.host(80), "/echo", nil)
		var got struct{ Host string }
		json.Unmarshal([]byte(body), &got)
		if res.StatusCode != 200 || got.Host != g.host(80) {
			t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
		}
	}
	if res, body := get(t, c, g.host(2222), "/", nil); res.StatusCode != 403 {
		t.Fatalf("private port: %d %q, want 403", res.StatusCode, body)
	}
	if res, body := get(t, c, g.host(81), "/", nil); res.StatusCode != 502 || !strings.Contains(body, "not published") {
		t.Fatalf("unpublished port: %d %q, want 502", res.StatusCode, body)
	}
	start := time.Now()
	if res, body := get(t, c, newID(t).String()+"."+testDomain, "/", nil); res.StatusCode != 502 || !strings.Contains(body, "offline") {
		t.Fatalf("offline device: %d %q, want 502", res.StatusCode, body)
	} else if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("offline device answered after %v", d)
	}

	// A WebSocket-style upgrade over a real stream, half-close included.
	wc, err := net.DialTimeout("tcp", g.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	wc.SetDeadline(time.Now().Add(ioTimeout))
	fmt.Fprintf(wc, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\n\r\n", g.host(80))
	br := bufio.NewReader(wc)
	if res, err := http.ReadResponse(br, nil); err != nil || res.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", res, err)
	}
	br.ReadString('\n') // the device's greeting
	io.WriteString(wc, "over quic\n")
	if line, _ := br.ReadString('\n'); line != "OVER QUIC\n" {
		t.Fatalf("echo over a real stream: %q", line)
	}
	wc.(*net.TCPConn).CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "bye\n" {
		t.Fatalf("after half-close: %q, %v", rest, err)
	}

	// SOCKS: the public port answers, the private one is denied (0x02),
	// and IP literals are refused without a dial.
	for _, tc := range []struct {
		host string
		port uint16
		want byte
	}{
		{device.String() + ".tunnel", 22, socks.ReplySucceeded},
		{strings.ToUpper(device.String()) + ".TUNNEL", 2222, socks.ReplyNotAllowed},
		{"127.0.0.1", 22, socks.ReplyNotAllowed},
	} {
		code, conn := socksConnect(t, sln.Addr().String(), "", tc.host, tc.port)
		if code != tc.want {
			t.Errorf("SOCKS %s:%d: reply %#02x, want %#02x", tc.host, tc.port, code, tc.want)
		}
		if code == socks.ReplySucceeded {
			if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
				t.Errorf("SOCKS stream: %q, %v", line, err)
			}
		}
		conn.Close()
	}

	// On the device every stream of the gateway ended cleanly, none was
	// left open or reset.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("device log:\n%s", deviceLog.String())
		}
	})
	waitFor(t, "the device to log every stream", func() bool {
		return strings.Count(deviceLog.String(), `"outcome":"ok"`) >= 5
	})
	for _, line := range strings.Split(strings.TrimSpace(deviceLog.String()), "\n") {
		if strings.Contains(line, `"aborted"`) {
			t.Errorf("device: %s", line)
		}
	}
	t.Logf("device log:\n%s", deviceLog.String())
}

package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/gateway"
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
// publishing ports, and a gateway with its SOCKS and HTTP fronts, started
// as `tunnel relay`, `tunnel publish` and `tunnel gateway` start them.
func realWorld(t *testing.T, ports []peer.Port) (device identity.ID, gw *roles.Gateway, deviceLog *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var waits []func() error
	t.Cleanup(func() {
		cancel()
		for _, w := range waits {
			w()
		}
	})
	rkey, dkey, gkey := newKey(t), newKey(t), newKey(t)
	relay, err := roles.StartRelay(ctx, roles.RelayConfig{Key: rkey, Listen: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, relay.Wait)
	relays := []resolver.RelayAddr{relay.Addr()}
	deviceLog = &syncBuffer{}
	dev, err := roles.StartDevice(ctx, roles.DeviceConfig{Key: dkey, Relays: relays, Ports: ports, Log: zerolog.New(deviceLog)})
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, dev.Wait)
	gw, err = roles.StartGateway(ctx, roles.GatewayConfig{Key: gkey, Home: t.TempDir(), Relays: relays,
		SOCKS: "127.0.0.1:0", HTTP: "127.0.0.1:0", Domain: gateway.TestDomain, Limits: gateway.DefaultLimits(), Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, gw.Wait)
	wctx, wcancel := context.WithTimeout(ctx, gateway.IOTimeout)
	defer wcancel()
	if err := dev.Node.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}
	return dkey.ID(), gw, deviceLog
}

func newKey(t *testing.T) *identity.Key {
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// client returns an HTTP client that sends every request to addr.
func client(t *testing.T, addr string) *http.Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "tcp", addr)
	}, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: gateway.IOTimeout}
}

func host(device identity.ID, port uint16) string {
	if port == 80 {
		return device.String() + "." + gateway.TestDomain
	}
	return fmt.Sprintf("%s-%d.%s", device, port, gateway.TestDomain)
}

// TestRealDevice runs both fronts against a real device over end-to-end
// QUIC: public ports are reached, a private one is denied, and every
// stream ends cleanly on the device.
func TestRealDevice(t *testing.T) {
	back := gateway.StartBackend(t)
	echo := gateway.SSHLike(t)
	device, gw, deviceLog := realWorld(t, []peer.Port{
		{Remote: 80, Target: back, Access: peer.Public},
		{Remote: 22, Target: echo, Access: peer.Public},
		{Remote: 2222, Target: echo, Access: peer.Private, Allowed: []identity.ID{newKey(t).ID()}},
	})
	httpAddr, socksAddr := gw.Addr("http").String(), gw.Addr("socks").String()
	c := client(t, httpAddr)
	get := gateway.Get
	ioTimeout := gateway.IOTimeout

	for i := range 3 {
		res, body := get(t, c, host(device, 80), "/echo", nil)
		var got struct{ Host string }
		json.Unmarshal([]byte(body), &got)
		if res.StatusCode != 200 || got.Host != host(device, 80) {
			t.Fatalf("request %d: %d %q", i, res.StatusCode, body)
		}
	}
	if res, body := get(t, c, host(device, 2222), "/", nil); res.StatusCode != 403 {
		t.Fatalf("private port: %d %q, want 403", res.StatusCode, body)
	}
	if res, body := get(t, c, host(device, 81), "/", nil); res.StatusCode != 502 || !strings.Contains(body, "not published") {
		t.Fatalf("unpublished port: %d %q, want 502", res.StatusCode, body)
	}
	start := time.Now()
	if res, body := get(t, c, newKey(t).ID().String()+"."+gateway.TestDomain, "/", nil); res.StatusCode != 502 || !strings.Contains(body, "offline") {
		t.Fatalf("offline device: %d %q, want 502", res.StatusCode, body)
	} else if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("offline device answered after %v", d)
	}

	// A WebSocket-style upgrade over a real stream, half-close included.
	wc, err := net.DialTimeout("tcp", httpAddr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	wc.SetDeadline(time.Now().Add(ioTimeout))
	fmt.Fprintf(wc, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: a2V5\r\n\r\n", host(device, 80))
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
		ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
		conn, err := socks.Dial(ctx, socksAddr, tc.host, tc.port)
		cancel()
		code := socks.ReplySucceeded
		if re, ok := errors.AsType[*socks.ReplyError](err); ok {
			code = re.Code
		} else if err != nil {
			t.Fatalf("SOCKS %s:%d: %v", tc.host, tc.port, err)
		}
		if code != tc.want {
			t.Errorf("SOCKS %s:%d: reply %#02x, want %#02x", tc.host, tc.port, code, tc.want)
		}
		if code != socks.ReplySucceeded {
			continue
		}
		if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.HasPrefix(line, "SSH-2.0-") {
			t.Errorf("SOCKS stream: %q, %v", line, err)
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
	gateway.WaitFor(t, "the device to log every stream", func() bool {
		return strings.Count(deviceLog.String(), `"outcome":"ok"`) >= 5
	})
	for _, line := range strings.Split(strings.TrimSpace(deviceLog.String()), "\n") {
		if strings.Contains(line, `"aborted"`) {
			t.Errorf("device: %s", line)
		}
	}
	t.Logf("device log:\n%s", deviceLog.String())
}

package socks_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/test/tcptest"
)

// socksd is a running `tunnel socksd` with a rendezvous node and a device
// publishing port 22 (an echo server), started as the product starts them.
type socksd struct {
	addr   string // the SOCKS (and HTTP) address
	device string // the device's .tunnel name
}

func startSocksd(t *testing.T) socksd { return startSocksdWith(t, func(*roles.ClientConfig) {}) }

// startSocksdWith is startSocksd with socksd's config changed by set.
func startSocksdWith(t *testing.T, set func(*roles.ClientConfig)) socksd {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var waits []func() error
	t.Cleanup(func() {
		cancel()
		for _, w := range waits {
			w()
		}
	})
	rk, dk, ck := newKey(t), newKey(t), newKey(t)
	relay, err := roles.StartRelay(ctx, roles.RelayConfig{Key: rk, Listen: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, relay.Wait)
	relays := []resolver.RelayAddr{relay.Addr()}
	dev, err := roles.StartDevice(ctx, roles.DeviceConfig{Key: dk, Relays: relays, Log: zerolog.Nop(),
		Ports: []peer.Port{{Remote: 22, Target: tcptest.Echo(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, dev.Wait)
	cfg := roles.ClientConfig{Key: ck, Home: t.TempDir(), Listen: "127.0.0.1:0", Relays: relays, Log: zerolog.Nop()}
	set(&cfg)
	cli, err := roles.StartClient(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	waits = append(waits, cli.Wait)
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := dev.Node.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}
	return socksd{addr: cli.Addr().String(), device: dk.ID().String() + ".tunnel"}
}

func newKey(t *testing.T) *identity.Key {
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// The SOCKS5 client against a real socksd: a stream that works, and each
// refusal as a *ReplyError that dialer.Classify reads as the socksd's own
// outcome.
func TestClientDial(t *testing.T) {
	s := startSocksd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := socks.Dial(ctx, s.addr, s.device, 22)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo %q, %v", got, err)
	}

	unknown := newKey(t).ID().String() + ".tunnel"
	for _, tc := range []struct {
		host string
		port uint16
		code byte
		want dialer.Outcome
	}{
		{"example.com", 80, socks.ReplyNotAllowed, dialer.Denied},
		{"127.0.0.1", 22, socks.ReplyNotAllowed, dialer.Denied},
		{unknown, 22, socks.ReplyHostUnreachable, dialer.Offline},
		{s.device, 23, socks.ReplyConnectionRefused, dialer.Refused},
	} {
		_, err := socks.Dial(ctx, s.addr, tc.host, tc.port)
		re, ok := errors.AsType[*socks.ReplyError](err)
		if !ok || re.Code != tc.code {
			t.Errorf("%s:%d: %v, want reply %#02x", tc.host, tc.port, err, tc.code)
			continue
		}
		if got := dialer.Classify(err); got != tc.want {
			t.Errorf("%s:%d: %v classified %v, want %v", tc.host, tc.port, err, got, tc.want)
		}
	}
}

// A server that accepts and never answers costs the client its context's
// deadline, no more.
func TestClientDialSilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	held := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			held <- c
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = socks.Dial(ctx, ln.Addr().String(), "x.tunnel", 22)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v", d)
	}
	(<-held).Close()
}

// HTTP CONNECT on socksd's SOCKS port: the same dialer and rules as SOCKS.
func TestHTTPConnect(t *testing.T) {
	s := startSocksd(t)
	addr, name := s.addr, s.device
	connect := func(target string, extra string) (*bufio.Reader, net.Conn, int) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "CONNECT "+target+" HTTP/1.1\r\nHost: "+target+"\r\n\r\n"+extra)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		return br, c, resp.StatusCode
	}
	// Bytes sent right behind the request (optimistic clients) arrive.
	br, c, code := connect(name+":22", "early")
	if code != 200 {
		t.Fatalf("CONNECT %s: %d", name, code)
	}
	io.WriteString(c, " bytes")
	c.(*net.TCPConn).CloseWrite()
	got, _ := io.ReadAll(br)
	c.Close()
	if string(got) != "early bytes" {
		t.Fatalf("echo %q", got)
	}
	for target, want := range map[string]int{
		"example.com:443": http.StatusForbidden,
		"127.0.0.1:22":    http.StatusForbidden,
		name + ":23":      http.StatusBadGateway,
		"yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy.tunnel:22": http.StatusBadGateway,
		"nohost": http.StatusBadRequest,
	} {
		_, c, code := connect(target, "")
		c.Close()
		if code != want {
			t.Errorf("CONNECT %s: %d, want %d", target, code, want)
		}
	}
}

// socksd with a password file, as the product starts it: SOCKS clients
// give a username and password (RFC 1929), HTTP CONNECT clients
// Proxy-Authorization; without them, or with a wrong one, nothing.
func TestSocksdPassword(t *testing.T) {
	file := filepath.Join(t.TempDir(), socks.PasswordFileName)
	if _, err := socks.SetPassword(file, "alice", "right", socks.MinHashCost); err != nil {
		t.Fatal(err)
	}
	s := startSocksdWith(t, func(c *roles.ClientConfig) { c.Auth = file })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := socks.DialAuth(ctx, s.addr, &socks.Auth{User: "alice", Password: "right"}, s.device, 22)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello"))
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "hello" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if _, err := socks.DialAuth(ctx, s.addr, &socks.Auth{User: "alice", Password: "wrong"}, s.device, 22); !errors.Is(err, socks.ErrAuthFailed) {
		t.Fatalf("wrong password: %v, want ErrAuthFailed", err)
	}
	if _, err := socks.Dial(ctx, s.addr, s.device, 22); !errors.Is(err, socks.ErrNoAcceptableMethod) {
		t.Fatalf("no password: %v, want ErrNoAcceptableMethod", err)
	}

	for auth, want := range map[string]int{
		"":      http.StatusProxyAuthRequired,
		"wrong": http.StatusProxyAuthRequired,
		"right": http.StatusOK,
	} {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		req := "CONNECT " + s.device + ":22 HTTP/1.1\r\nHost: " + s.device + ":22\r\n"
		if auth != "" {
			req += "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("alice:"+auth)) + "\r\n"
		}
		io.WriteString(c, req+"\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: http.MethodConnect})
		c.Close()
		if err != nil || resp.StatusCode != want {
			t.Errorf("CONNECT with password %q: %v, %v; want %d", auth, resp, err, want)
		}
	}
}

package gateway

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/socks"
)

// socksConnect does a SOCKS5 CONNECT from local address from ("" for any)
// and returns the reply code and the connection.
func socksConnect(t *testing.T, addr, from, host string, port uint16) (byte, net.Conn) {
	t.Helper()
	nd := &net.Dialer{Timeout: ioTimeout}
	if from != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := nd.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(ioTimeout))
	defer c.SetDeadline(time.Time{})
	err = socks.Handshake(c, host, port)
	if re, ok := errors.AsType[*socks.ReplyError](err); ok {
		return re.Code, c
	}
	if err != nil {
		return socks.ReplyGeneralFailure, c
	}
	return socks.ReplySucceeded, c
}

func startSOCKS(t *testing.T, s *SOCKS) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(ioTimeout):
			t.Errorf("Serve did not return after cancel")
		}
	})
	return ln.Addr().String()
}

func TestSOCKS(t *testing.T) {
	back := startBackend(t)
	device := newID(t)
	d := &fakeDialer{id: device, backend: back.Listener.Addr().String(), ssh: sshLike(t)}
	addr := startSOCKS(t, &SOCKS{Dialer: d, Log: zerolog.Nop(), DialTimeout: 300 * time.Millisecond})
	name := device.String() + ".tunnel"

	for _, tc := range []struct {
		host string
		port uint16
		want byte
	}{
		{name, portSSH, socks.ReplySucceeded},
		{"example.com", 80, socks.ReplyNotAllowed},
		{"127.0.0.1", 80, socks.ReplyNotAllowed},
		{"::1", 80, socks.ReplyNotAllowed},
		{"[127.0.0.1]", 80, socks.ReplyNotAllowed},
		{"x.tunnel", 80, socks.ReplyHostUnreachable},
		{newID(t).String() + ".tunnel", 80, socks.ReplyHostUnreachable},
		{name, portDenied, socks.ReplyNotAllowed},
		{name, portNotPublished, socks.ReplyConnectionRefused},
		{name, portRefused, socks.ReplyConnectionRefused},
		{name, portTimeout, socks.ReplyTTLExpired},
		{name, portHang, socks.ReplyTTLExpired}, // the dial deadline
	} {
		code, c := socksConnect(t, addr, "", tc.host, tc.port)
		c.Close()
		if code != tc.want {
			t.Errorf("%s:%d: reply %#02x, want %#02x", tc.host, tc.port, code, tc.want)
		}
	}
	before := d.numDials()
	for _, host := range []string{"10.0.0.1", "localhost", "example.com", "10.0.0.1.tunnel.example"} {
		code, c := socksConnect(t, addr, "", host, 22)
		c.Close()
		if code != socks.ReplyNotAllowed {
			t.Errorf("%s: reply %#02x, want 0x02", host, code)
		}
	}
	if d.numDials() != before {
		t.Fatal("a non-.tunnel host was dialed: the gateway must never be an open proxy")
	}
}

func TestSOCKSLimits(t *testing.T) {
	back := startBackend(t)
	device := newID(t)
	d := &fakeDialer{id: device, backend: back.Listener.Addr().String(), ssh: sshLike(t)}
	name := device.String() + ".tunnel"

	t.Run("concurrent streams", func(t *testing.T) {
		lim := NewLimiter(Limits{ConnRate: 1000, ConnBurst: 1000, MaxStreams: 3, MaxTotal: 100})
		addr := startSOCKS(t, &SOCKS{Dialer: d, Limiter: lim, Log: zerolog.Nop()})
		var open []net.Conn
		defer func() {
			for _, c := range open {
				c.Close()
			}
		}()
		for range 3 {
			code, c := socksConnect(t, addr, "127.0.0.1", name, 80)
			open = append(open, c)
			if code != socks.ReplySucceeded {
				t.Fatalf("stream within the cap: %#02x", code)
			}
		}
		if code, c := socksConnect(t, addr, "127.0.0.1", name, 80); code != socks.ReplyNotAllowed {
			t.Fatalf("stream over the cap: %#02x, want 0x02", code)
		} else {
			c.Close()
		}
		if code, c := socksConnect(t, addr, "127.0.0.2", name, 80); code != socks.ReplySucceeded {
			t.Fatalf("another source: %#02x", code)
		} else {
			c.Close()
		}
		// Closing one gives its slot back.
		open[0].Close()
		waitFor(t, "a slot to free up", func() bool {
			code, c := socksConnect(t, addr, "127.0.0.1", name, 80)
			c.Close()
			return code == socks.ReplySucceeded
		})
	})

	t.Run("rate", func(t *testing.T) {
		lim := NewLimiter(Limits{ConnRate: 0.01, ConnBurst: 2, MaxStreams: 100, MaxTotal: 100})
		addr := startSOCKS(t, &SOCKS{Dialer: d, Limiter: lim, Log: zerolog.Nop()})
		for i := range 2 {
			code, c := socksConnect(t, addr, "127.0.0.1", name, 80)
			c.Close()
			if code != socks.ReplySucceeded {
				t.Fatalf("connection %d within the burst: %#02x", i+1, code)
			}
		}
		n := d.numDials()
		if code, c := socksConnect(t, addr, "127.0.0.1", name, 80); code != socks.ReplyNotAllowed {
			t.Fatalf("past the burst: %#02x, want 0x02", code)
		} else {
			c.Close()
		}
		if d.numDials() != n {
			t.Fatal("a refused connection dialed the device")
		}
		if code, c := socksConnect(t, addr, "127.0.0.2", name, 80); code != socks.ReplySucceeded {
			t.Fatalf("another source: %#02x", code)
		} else {
			c.Close()
		}
	})
}

package socks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// dialRecorder dials the echo upstream for .tunnel hosts and refuses the
// rest as the dialer does without a fallback, recording what it was asked.
type dialRecorder struct {
	u     *upstream
	mu    sync.Mutex
	asked []string
}

func (d *dialRecorder) dial(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
	d.mu.Lock()
	d.asked = append(d.asked, net.JoinHostPort(host, fmt.Sprint(port)))
	d.mu.Unlock()
	if _, isTunnel, _ := resolver.ParseName(host); !isTunnel {
		return nil, fmt.Errorf("%w: %s", dialer.ErrNotTunnel, host)
	}
	return d.u.dial(ctx, host, port)
}

func (d *dialRecorder) dials() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.asked...)
}

// socks4 sends req and extra in one write and returns the reply code and
// how long it took to come.
func socks4(t *testing.T, addr string, req Request4, extra []byte) (*net.TCPConn, byte, time.Duration) {
	t.Helper()
	c := dialServer(t, addr)
	msg, err := AppendRequest4(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := c.Write(append(msg, extra...)); err != nil {
		t.Fatal(err)
	}
	code, err := ReadReply4(c)
	if err != nil {
		t.Fatalf("socks4 %+v: %v", req, err)
	}
	return c, code, time.Since(start)
}

// A SOCKS4a CONNECT to a .tunnel host is served at once, and bytes sent
// right behind the request reach the upstream.
func TestSOCKS4aServed(t *testing.T) {
	d := &dialRecorder{u: startUpstream(t, echo)}
	front := &HTTPFront{Dial: d.dial, Log: zerolog.Nop()}
	addr := serve(t, &Server{Dial: d.dial, Other: front.ServeConn})
	c, code, took := socks4(t, addr, Request4{Cmd: CmdConnect, Port: 22, User: "someone", Host: testDevice}, []byte("pipelined "))
	if code != Reply4Granted {
		t.Fatalf("reply %#02x, want 0x5a", code)
	}
	t.Logf("SOCKS4a to %s granted in %s", testDevice, took)
	c.Write([]byte("hello"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "pipelined hello"+echoTrailer {
		t.Fatalf("echo %q, %v", got, err)
	}
	if got := d.dials(); len(got) != 1 || got[0] != testDevice+":22" {
		t.Fatalf("dialed %v", got)
	}
}

// Every refusal is 0x5B, at once (far under the handshake timeout), and
// dials nothing it should not.
func TestSOCKS4Refused(t *testing.T) {
	d := &dialRecorder{u: startUpstream(t, echo)}
	// A handshake timeout of a minute: an answer that waited for it would
	// fail the test's 5 s deadline.
	plain := serve(t, &Server{Dial: d.dial, HandshakeTimeout: time.Minute})
	offline := serve(t, &Server{HandshakeTimeout: time.Minute,
		Dial: func(context.Context, string, uint16) (transport.HalfConn, error) { return nil, resolver.ErrOffline }})
	a, _ := newTestAuth(t, AuthLimits{})
	withAuth := serve(t, &Server{Dial: d.dial, Auth: a, HandshakeTimeout: time.Minute})
	var admitAsked atomic.Int64
	refuse := func(net.Conn) error { admitAsked.Add(1); return ErrOtherUser }
	refused := serve(t, &Server{Dial: d.dial, Admit: refuse, HandshakeTimeout: time.Minute})

	ip := netip.MustParseAddr("127.0.0.1")
	for _, c := range []struct {
		name string
		addr string
		req  Request4
	}{
		{"socks4 to an IP", plain, Request4{Cmd: CmdConnect, Port: 22, IP: ip}},
		{"socks4a to a host not .tunnel", plain, Request4{Cmd: CmdConnect, Port: 80, Host: "example.com"}},
		{"BIND", plain, Request4{Cmd: CmdBind, Port: 22, Host: testDevice}},
		{"offline device", offline, Request4{Cmd: CmdConnect, Port: 22, Host: testDevice}},
		{"password required", withAuth, Request4{Cmd: CmdConnect, Port: 22, Host: testDevice, User: "alice"}},
		{"refused by Admit", refused, Request4{Cmd: CmdConnect, Port: 22, Host: testDevice}},
	} {
		_, code, took := socks4(t, c.addr, c.req, nil)
		if code != Reply4Rejected {
			t.Errorf("%s: reply %#02x, want 0x5b", c.name, code)
		}
		if took > time.Second {
			t.Errorf("%s: answered in %s, want at once", c.name, took)
		}
	}
	if got := d.dials(); len(got) != 2 || got[0] != "127.0.0.1:22" || got[1] != "example.com:80" {
		t.Fatalf("dialed %v; want only the two CONNECTs the Dial refused itself", got)
	}
	if n := admitAsked.Load(); n != 1 {
		t.Fatalf("Admit asked %d times, want 1", n)
	}

	// A user id that never ends is cut at 255 bytes and refused, the rest
	// unread.
	c := dialServer(t, plain)
	c.Write(append([]byte{4, 1, 0, 22, 0, 0, 0, 1}, bytes.Repeat([]byte("u"), 300)...))
	if code, err := ReadReply4(c); err != nil || code != Reply4Rejected {
		t.Fatalf("endless user id: %#02x, %v; want 0x5b", code, err)
	}
}

func TestRequest4Encoding(t *testing.T) {
	for _, r := range []Request4{
		{Cmd: CmdConnect, Port: 22, IP: netip.MustParseAddr("10.1.2.3"), User: "u"},
		{Cmd: CmdConnect, Port: 443, Host: testDevice},
	} {
		b, err := AppendRequest4(nil, r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadRequest4(bytes.NewReader(b))
		if r.Host != "" {
			r.IP = netip.AddrFrom4([4]byte{0, 0, 0, 1})
		}
		if err != nil || got != r {
			t.Fatalf("%+v encoded % x parses to %+v, %v", r, b, got, err)
		}
	}
	for _, r := range []Request4{
		{Cmd: CmdConnect, IP: netip.MustParseAddr("::1")},
		{Cmd: CmdConnect, IP: netip.MustParseAddr("0.0.0.7")},
		{Cmd: CmdConnect, Host: strings.Repeat("h", 256)},
		{Cmd: CmdConnect, Host: "a\x00b"},
	} {
		if _, err := AppendRequest4(nil, r); err == nil {
			t.Errorf("%+v encoded", r)
		}
	}
	for _, in := range [][]byte{
		{5, 1, 0, 22, 1, 2, 3, 4, 0},
		{4, 1, 0, 22, 0, 0, 0, 1, 0, 0}, // 4a with an empty host
		{4, 1, 0, 22, 1, 2, 3, 4, 'u'},  // cut inside the user id
	} {
		if _, err := ReadRequest4(bytes.NewReader(in)); err == nil {
			t.Errorf("% x parsed", in)
		} else if !errors.Is(err, ErrVersion4) && !errors.Is(err, ErrMalformed) && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("% x: %v", in, err)
		}
	}
}

// FuzzReadRequest4 checks that no input panics the SOCKS4 parser, that it
// reads at most 8 + 2×256 bytes and exactly the request it returns, which
// encodes back to those bytes.
func FuzzReadRequest4(f *testing.F) {
	f.Add([]byte("\x04\x01\x00\x16\x00\x00\x00\x01user\x00" + testDevice + "\x00"))
	f.Add([]byte("\x04\x01\x00\x16\x7f\x00\x00\x01\x00"))
	f.Add([]byte("\x04\x02\x00\x16\x00\x00\x00\x01\x00h\x00rest"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		req, err := ReadRequest4(r)
		consumed := data[:len(data)-r.Len()]
		if len(consumed) > 8+2*256 {
			t.Fatalf("read %d bytes of % x", len(consumed), data)
		}
		if err != nil {
			return
		}
		enc, err := AppendRequest4(nil, req)
		if err != nil {
			t.Fatalf("parsed %+v from % x but cannot encode it: %v", req, consumed, err)
		}
		want := bytes.Clone(consumed)
		if req.Is4a() {
			want[7] = 1 // the encoder always says 0.0.0.1
		}
		if !bytes.Equal(enc, want) {
			t.Fatalf("parsed %+v from % x; re-encoded as % x", req, consumed, enc)
		}
	})
}

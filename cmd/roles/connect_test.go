package roles

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/resolver/names"
	"github.com/tunnel-dev/tunnel/socks"
)

// Connect, as `tunnel connect` uses it: through a running socksd, and
// through a node of its own; each failure says what happened first.
func TestConnect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startRelay(t, ctx, RelayConfig{})
	relays := []resolver.RelayAddr{r.Addr()}
	dk := newKey(t)
	dev, err := StartDevice(ctx, DeviceConfig{Key: dk, Relays: relays, Log: zerolog.Nop(),
		Ports: []peer.Port{{Remote: 22, Target: echo(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); dev.Wait() }()
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := dev.Node.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}
	// Both the socksd's home and the own node's name the device garage.
	socksHome, ownHome := t.TempDir(), t.TempDir()
	for _, home := range []string{socksHome, ownHome} {
		if _, err := names.Add(home, "garage", dk.ID()); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := StartClient(ctx, ClientConfig{Key: newKey(t), Home: socksHome, Listen: "127.0.0.1:0", Relays: relays, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cli.Wait() }()
	device := dk.ID().String() + ".tunnel"
	offline := newKey(t).ID().String() + ".tunnel"

	for _, mode := range []ConnectConfig{
		{SOCKS: cli.Addr().String(), Log: zerolog.Nop()},
		{Home: ownHome, Relays: relays, Log: zerolog.Nop()},
		// The socksd running with the home goes before the relays given
		// (a dead one here).
		{Home: socksHome, PreferSocksd: true, Relays: []resolver.RelayAddr{deadRelay(t)}, Log: zerolog.Nop()},
	} {
		name := "own node"
		if mode.SOCKS != "" {
			name = "socks"
		} else if mode.PreferSocksd {
			name = "running socksd"
		}
		t.Run(name, func(t *testing.T) {
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			defer ccancel()
			for _, host := range []string{device, "garage.tunnel", "Garage.TUNNEL"} {
				s, done, err := Connect(cctx, mode, host, 22)
				if err != nil {
					t.Fatalf("%s: %v", host, err)
				}
				s.Write([]byte("hi"))
				s.CloseWrite()
				got, _ := io.ReadAll(s)
				s.Close()
				done()
				if string(got) != "hi" {
					t.Fatalf("%s: echo %q", host, got)
				}
			}
			// Through a SOCKS server a refusal is its reply code, in words
			// (socks.ReplyText); through its own node, the outcome, then
			// the details.
			prefix := func(host string, port uint16) string { return fmt.Sprintf("connect to %s:%d: ", host, port) }
			unreachable, refused := "unknown or offline device", "port not published by the device"
			malformed := "malformed .tunnel name"
			if mode.SOCKS != "" {
				prefix = func(host string, port uint16) string {
					return fmt.Sprintf("connect to %s:%d via %s: ", host, port, mode.SOCKS)
				}
				unreachable, refused = socks.ReplyText(socks.ReplyHostUnreachable), socks.ReplyText(socks.ReplyConnectionRefused)
				malformed = unreachable
			}
			for host, want := range map[string]string{offline: unreachable, "abc.tunnel": malformed, "[::1].tunnel": malformed, "shed.tunnel": malformed} {
				_, _, err := Connect(cctx, mode, host, 22)
				if err == nil || !strings.HasPrefix(err.Error(), prefix(host, 22)+want) {
					t.Errorf("%s: %v, want %q first", host, err, prefix(host, 22)+want)
				}
			}
			if _, _, err := Connect(cctx, mode, device, 23); err == nil || !strings.HasPrefix(err.Error(), prefix(device, 23)+refused) {
				t.Errorf("unpublished port: %v, want %q", err, prefix(device, 23)+refused)
			}
		})
	}
}

// The control socket refuses what it does not answer, with a reply that
// says so, and serves no dial on a role that is not socksd.
func TestControlRefusals(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startRelay(t, ctx, RelayConfig{})
	n := startNode(t, ctx, NodeConfig{Relays: []resolver.RelayAddr{r.Addr()}})
	home := t.TempDir()
	stop := serveControl(ctx, home, "publish", n, zerolog.Nop())
	path := StatusPath(home, "publish")
	for line, want := range map[string]string{
		"dial " + n.Transport.Key().ID().String() + ".tunnel 22": "publish does not answer",
		"frobnicate":                           "publish does not answer",
		"status extra":                         "publish does not answer",
		strings.Repeat("x", maxControlLine+10): "longer than",
	} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, line+"\n")
		err = readReply(c)
		c.Close()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.20q: reply %v, want %q", line, err, want)
		}
	}
	// A client that sends nothing does not hold up stopping.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // accepted and waiting for its line
	start := time.Now()
	stop()
	if took := time.Since(start); took > time.Second {
		t.Errorf("stop with an idle control client took %s", took)
	}
	// No socksd running and no relay: Reach says what to do.
	if _, err := Reach(ctx, ConnectConfig{Home: t.TempDir(), PreferSocksd: true}); !errors.Is(err, ErrNoWay) {
		t.Fatalf("Reach with nothing running and no relay: %v, want ErrNoWay", err)
	}
}

// Through a socksd that wants a password: with it, a stream; without it,
// a refusal that says a password may be wanted.
func TestConnectSOCKSAuth(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startRelay(t, ctx, RelayConfig{})
	relays := []resolver.RelayAddr{r.Addr()}
	dk := newKey(t)
	dev, err := StartDevice(ctx, DeviceConfig{Key: dk, Relays: relays, Log: zerolog.Nop(),
		Ports: []peer.Port{{Remote: 22, Target: echo(t)}}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); dev.Wait() }()
	file := filepath.Join(t.TempDir(), socks.PasswordFileName)
	if _, err := socks.SetPassword(file, "alice", "right", socks.MinHashCost); err != nil {
		t.Fatal(err)
	}
	// Both the socksd's home and the own node's name the device garage.
	socksHome, ownHome := t.TempDir(), t.TempDir()
	for _, home := range []string{socksHome, ownHome} {
		if _, err := names.Add(home, "garage", dk.ID()); err != nil {
			t.Fatal(err)
		}
	}
	cli, err := StartClient(ctx, ClientConfig{Key: newKey(t), Home: socksHome, Listen: "127.0.0.1:0", Relays: relays,
		Auth: file, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cli.Wait() }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := dev.Node.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}
	device := dk.ID().String() + ".tunnel"
	s, done, err := Connect(wctx, ConnectConfig{SOCKS: cli.Addr().String(), SOCKSAuth: &socks.Auth{User: "alice", Password: "right"}}, device, 22)
	if err != nil {
		t.Fatalf("with the password: %v", err)
	}
	s.Write([]byte("hi"))
	s.CloseWrite()
	got, _ := io.ReadAll(s)
	s.Close()
	done()
	if string(got) != "hi" {
		t.Fatalf("echo %q", got)
	}
	for _, auth := range []*socks.Auth{nil, {User: "alice", Password: "wrong"}} {
		if _, _, err := Connect(wctx, ConnectConfig{SOCKS: cli.Addr().String(), SOCKSAuth: auth}, device, 22); err == nil {
			t.Errorf("auth %+v: connected", auth)
		} else {
			t.Logf("auth %+v: %v", auth, err)
		}
	}
}

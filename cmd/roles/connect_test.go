package roles

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/resolver"
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
	cli, err := StartClient(ctx, ClientConfig{Key: newKey(t), Home: t.TempDir(), Listen: "127.0.0.1:0", Relays: relays, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cli.Wait() }()
	device := dk.ID().String() + ".tunnel"
	offline := newKey(t).ID().String() + ".tunnel"

	for _, mode := range []ConnectConfig{
		{SOCKS: cli.Addr().String(), Log: zerolog.Nop()},
		{Home: t.TempDir(), Relays: relays, Log: zerolog.Nop()},
	} {
		name := "own node"
		if mode.SOCKS != "" {
			name = "socks"
		}
		t.Run(name, func(t *testing.T) {
			cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
			defer ccancel()
			s, done, err := Connect(cctx, mode, device, 22)
			if err != nil {
				t.Fatal(err)
			}
			s.Write([]byte("hi"))
			s.CloseWrite()
			got, _ := io.ReadAll(s)
			s.Close()
			done()
			if string(got) != "hi" {
				t.Fatalf("echo %q", got)
			}
			for host, want := range map[string]string{
				offline:        "unknown or offline device",
				"abc.tunnel":   "malformed .tunnel name",
				"[::1].tunnel": "malformed .tunnel name",
			} {
				_, _, err := Connect(cctx, mode, host, 22)
				if err == nil || !strings.HasPrefix(err.Error(), "connect to "+host+":22: "+want) {
					t.Errorf("%s: %v, want %q first", host, err, want)
				}
			}
			// A SOCKS reply says only 0x05: refused, or not published.
			want := "port not published by the device"
			if mode.SOCKS != "" {
				want = "connection refused"
			}
			if _, _, err := Connect(cctx, mode, device, 23); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("unpublished port: %v, want %q", err, want)
			}
		})
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/gateway"
)

// lockedBuffer is a log sink written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *lockedBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *lockedBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestGatewayOwnKey runs `tunnel gateway` in a person's home — one holding
// node.key, the ID a device lists as the one client of its -private port —
// and checks that the gateway dials with a key of its own: the device
// denies it that port and logs a client ID that is not node.key's but
// gateway.key's, while its -public port answers through the same gateway.
func TestGatewayOwnKey(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	home := t.TempDir()
	person, err := identity.LoadOrCreate(home)
	if err != nil {
		t.Fatal(err)
	}
	nodeKeyBefore, _ := os.ReadFile(filepath.Join(home, identity.KeyFile))

	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var echoes sync.WaitGroup
	echoes.Go(func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			echoes.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	defer func() { echo.Close(); echoes.Wait() }()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	newKey := func() *identity.Key {
		k, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	relay, err := roles.StartRelay(ctx, roles.RelayConfig{Key: newKey(), Listen: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Wait()
	defer cancel()
	relays := []resolver.RelayAddr{relay.Addr()}
	devKey := newKey()
	var devLog lockedBuffer
	dev, err := roles.StartDevice(ctx, roles.DeviceConfig{Key: devKey, Relays: relays, Log: zerolog.New(&devLog),
		Ports: []peer.Port{
			{Remote: 22, Target: echo.Addr().String(), Access: peer.Public},
			{Remote: 2222, Target: echo.Addr().String(), Access: peer.Private, Allowed: []identity.ID{person.ID()}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Wait()
	defer cancel()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := dev.Node.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}

	socksAddr := freePort(t)
	gctx, gcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runGatewayCLI(gctx, home, "--relay", relays[0].String(), "--socks", socksAddr) }()
	defer func() {
		gcancel()
		if err := <-done; err != nil {
			t.Errorf("gateway: %v", err)
		}
	}()
	waitListening(t, socksAddr)
	host := devKey.ID().String() + ".tunnel"

	// The control: the public port answers through the gateway.
	dctx, dcancel := context.WithTimeout(ctx, 15*time.Second)
	defer dcancel()
	c, err := socks.Dial(dctx, socksAddr, host, 22)
	if err != nil {
		t.Fatalf("public port through the gateway: %v", err)
	}
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the gateway: %q, %v", buf, err)
	}
	c.Close()

	// The private port lists node.key's ID: the gateway is not it.
	c, err = socks.Dial(dctx, socksAddr, host, 2222)
	if re, ok := errors.AsType[*socks.ReplyError](err); !ok || re.Code != socks.ReplyNotAllowed {
		if c != nil {
			c.Close()
		}
		t.Fatalf("private port (node.key's ID listed) through the gateway: %v; want 0x02, the gateway must not hold node.key", err)
	}

	gwKey, err := identity.LoadFile(home, gateway.KeyFile)
	if err != nil {
		t.Fatalf("the gateway's own key: %v", err)
	}
	if gwKey.ID() == person.ID() {
		t.Fatal("gateway.key holds node.key's identity")
	}
	var denied []string
	for _, line := range strings.Split(devLog.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["outcome"] == "denied" {
			denied = append(denied, m["client"].(string))
		}
	}
	if len(denied) != 1 || denied[0] != gwKey.ID().String() {
		t.Fatalf("the device denied clients %q; want one, the gateway's own ID %s (node.key is %s)", denied, gwKey.ID(), person.ID())
	}
	if after, _ := os.ReadFile(filepath.Join(home, identity.KeyFile)); !bytes.Equal(after, nodeKeyBefore) {
		t.Fatal("node.key changed")
	}
	if st, err := os.Stat(filepath.Join(home, gateway.KeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("gateway.key: %v, %v; want mode 0600", st, err)
	}
}

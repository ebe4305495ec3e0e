package roles

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver"
)

func TestSocketPathMax(t *testing.T) {
	for goos, want := range map[string]int{"linux": 107, "windows": 107, "darwin": 103, "freebsd": 103, "plan9": 0} {
		if got := socketPathMax(goos); got != want {
			t.Errorf("socketPathMax(%q) = %d, want %d", goos, got, want)
		}
	}
	at := func(n int) string { return "/" + strings.Repeat("h", n-len("//socksd.sock")) + "/socksd.sock" }
	if p := at(103); len(p) != 103 || checkSocketPath("darwin", p) != nil {
		t.Errorf("darwin refuses a path of %d bytes", len(p))
	}
	err := checkSocketPath("darwin", at(104))
	if !errors.Is(err, ErrSocketPathTooLong) || !strings.Contains(err.Error(), "104 bytes") || !strings.Contains(err.Error(), "--home") {
		t.Errorf("darwin, 104 bytes: %v; want ErrSocketPathTooLong, the length and the cure", err)
	}
	if err := checkSocketPath("linux", at(104)); err != nil {
		t.Errorf("linux, 104 bytes: %v", err)
	}
	if err := checkSocketPath("windows", at(108)); !errors.Is(err, ErrSocketPathTooLong) {
		t.Errorf("windows, 108 bytes: %v", err)
	}
	if err := checkSocketPath("plan9", at(4000)); err != nil {
		t.Errorf("an unknown system: %v; want the system to decide", err)
	}
}

// The limit is the system's own: a socket path of socketPathMax bytes
// binds here, one byte more does not.
func TestSocketPathMaxIsTheSystems(t *testing.T) {
	max := socketPathMax(runtime.GOOS)
	if max == 0 {
		t.Skipf("no limit known for %s", runtime.GOOS)
	}
	dir := t.TempDir()
	if len(dir)+2 > max {
		t.Skipf("temporary directory %s is too long to try", dir)
	}
	name := func(n int) string { return filepath.Join(dir, strings.Repeat("s", n-len(dir)-1)) }
	ln, err := net.Listen("unix", name(max))
	if err != nil {
		t.Fatalf("a path of %d bytes: %v", max, err)
	}
	ln.Close()
	if ln, err := net.Listen("unix", name(max+1)); err == nil {
		ln.Close()
		t.Fatalf("a path of %d bytes binds: socketPathMax(%q) is too low", max+1, runtime.GOOS)
	}
	if checkSocketPath(runtime.GOOS, name(max)) != nil || checkSocketPath(runtime.GOOS, name(max+1)) == nil {
		t.Fatal("checkSocketPath disagrees with the system")
	}
}

// longHome is a home whose socksd.sock path is one byte too long here.
func longHome(t *testing.T) string {
	t.Helper()
	max := socketPathMax(runtime.GOOS)
	if max == 0 {
		t.Skipf("no limit known for %s", runtime.GOOS)
	}
	dir := t.TempDir()
	home := filepath.Join(dir, strings.Repeat("h", max+1-len(dir)-len("//socksd.sock")))
	if p := StatusPath(home, "socksd"); len(p) != max+1 {
		t.Fatalf("%s: %d bytes, want %d", p, len(p), max+1)
	}
	return home
}

// A home too long for a socket path: the daemon logs why it has no status
// socket, and status and connect say why they cannot ask it, not that
// nothing runs.
func TestControlSocketPathTooLong(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	home := longHome(t)
	var logged bytes.Buffer
	stop := serveControl(ctx, home, "socksd", nil, zerolog.New(&logged))
	stop()
	if !strings.Contains(logged.String(), "no status socket") || !strings.Contains(logged.String(), "use a shorter --home") {
		t.Errorf("log: %s", logged.String())
	}
	if _, err := ReadStatus(home); !errors.Is(err, ErrSocketPathTooLong) {
		t.Errorf("ReadStatus: %v, want ErrSocketPathTooLong", err)
	}
	if _, err := Reach(ctx, ConnectConfig{Home: home, PreferSocksd: true, Log: zerolog.Nop()}); !errors.Is(err, ErrSocketPathTooLong) {
		t.Errorf("Reach: %v, want ErrSocketPathTooLong", err)
	}
}

// A socket file left by a daemon that died is nothing running: status
// says so, connect looks for another way, and the next daemon replaces
// the file and answers.
func TestControlSocketStale(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	home := t.TempDir()
	path := StatusPath(home, "socksd")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := ReadStatus(home); err == nil || !strings.Contains(err.Error(), "no socksd, publish or gateway is running") {
		t.Fatalf("ReadStatus with a stale socket: %v", err)
	}
	if _, err := Reach(ctx, ConnectConfig{Home: home, PreferSocksd: true, Log: zerolog.Nop()}); !errors.Is(err, ErrNoWay) {
		t.Fatalf("Reach with a stale socket: %v, want ErrNoWay", err)
	}
	r := startRelay(t, ctx, RelayConfig{})
	n := startNode(t, ctx, NodeConfig{Relays: []resolver.RelayAddr{r.Addr()}})
	stop := serveControl(ctx, home, "socksd", n, zerolog.Nop())
	defer stop()
	if docs, err := ReadStatus(home); err != nil || len(docs) != 1 || docs[0].Role != "socksd" {
		t.Fatalf("ReadStatus after a socksd replaced the stale socket: %+v, %v", docs, err)
	}
}

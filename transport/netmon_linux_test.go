package transport

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// netlinkChildEnv makes the test binary, run in a namespace by
// TestWatchNetlinkNamespace, be the watcher there (TestWatchNetlinkChild).
const netlinkChildEnv = "TUNNEL_TEST_NETLINK_CHILD"

// A real rtnetlink event: a watcher runs in a network namespace made for
// the test (the test binary again, under ip netns exec), and an address
// added there, then the link brought up, each wake it. Root and ip(8) only.
func TestWatchNetlinkNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (ip netns add)")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		t.Skip("needs ip (iproute2)")
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	ns := fmt.Sprintf("tnl-netmon-%d-%s", os.Getpid(), hex.EncodeToString(b[:]))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	run("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ip, "netns", "exec", ns, os.Args[0], "-test.run=^TestWatchNetlinkChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), netlinkChildEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	})
	defer func() {
		cancel()
		wg.Wait()
		_ = cmd.Wait()
	}()
	expect := func(want string, within time.Duration) {
		t.Helper()
		deadline := time.After(within)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("watcher ended before %q: %s", want, stderr.String())
				}
				if l == want {
					return
				}
			case <-deadline:
				t.Fatalf("watcher did not say %q within %v", want, within)
			}
		}
	}
	expect("ready", 10*time.Second)
	select {
	case l := <-lines:
		t.Fatalf("watcher said %q before anything changed in the namespace", l)
	case <-time.After(100 * time.Millisecond):
	}
	run("-n", ns, "addr", "add", "192.0.2.7/32", "dev", "lo")
	expect("event", 5*time.Second)
	run("-n", ns, "link", "set", "lo", "up")
	expect("event", 5*time.Second)
	// A link's message is longer than the reader's buffer: the read is
	// cut, and the reader must go on. Once the link's messages are all
	// told (quiet for a while), one more change must still be heard.
	for quiet := false; !quiet; {
		select {
		case _, ok := <-lines:
			if !ok {
				t.Fatalf("watcher ended after the link came up: %s", stderr.String())
			}
		case <-time.After(300 * time.Millisecond):
			quiet = true
		}
	}
	run("-n", ns, "addr", "add", "192.0.2.8/32", "dev", "lo")
	expect("event", 5*time.Second)
}

// TestWatchNetlinkChild is the watcher TestWatchNetlinkNamespace runs: it
// says "ready", then "event" for each notice, until its parent ends it
// (or 20 s pass).
func TestWatchNetlinkChild(t *testing.T) {
	if os.Getenv(netlinkChildEnv) == "" {
		t.Skip("run by TestWatchNetlinkNamespace")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	events, err := watchNetlink(ctx, &wg)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	for {
		select {
		case <-ctx.Done():
			return
		case <-events:
			fmt.Println("event")
		}
	}
}

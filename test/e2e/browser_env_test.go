//go:build linux

package e2e

// The Chromium harness: a loopback-only network namespace to run a browser
// (and what it talks to) in, and headless Chromium runs with hard deadlines.
//
// Chromium runs as in a real user's setup (a SOCKS5 proxy or the PAC file
// socksd serves) but inside a namespace named like the NAT topologies'
// (tnl-PID-XXXX-browser, so needNetns's sweep removes leftovers of dead
// runs) that has nothing but a loopback interface: whatever Chromium tries
// on its own (update checks, safe browsing, DNS) cannot leave the machine.

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// chromiumTool is the browser, found once per run by needChromium.
var chromiumTool struct {
	once    sync.Once
	path    string
	version string // `chromium --version`
	missing string // why it cannot be used
}

// needChromium returns the path of the chromium binary. Without it the test
// fails when CI is set (`make deps` installs it) and is skipped otherwise.
// It also needs what the namespace harness needs (root, ip): see needNetns.
func needChromium(t *testing.T) string {
	t.Helper()
	needNetns(t)
	c := &chromiumTool
	c.once.Do(func() {
		p, err := lookPath("chromium")
		if err != nil {
			c.missing = "chromium not found (Debian package chromium; as root, `make deps` installs it)"
			return
		}
		r := runCmd(30*time.Second, nil, nil, p, "--version")
		if r.Code != 0 {
			c.missing = fmt.Sprintf("chromium --version failed: %s", r)
			return
		}
		c.path, c.version = p, strings.TrimSpace(string(r.Stdout))
		fmt.Fprintf(os.Stderr, "e2e: %s (%s)\n", c.version, c.path)
	})
	if c.missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(c.missing)
		}
		t.Skip(c.missing)
	}
	return c.path
}

// newLoopbackNetns creates a network namespace with only a loopback
// interface (up), deleted when t ends together with anything still running
// in it. Call needNetns (or needChromium) first.
func newLoopbackNetns(t *testing.T, role string) string {
	t.Helper()
	var ns string
	for {
		id, err := newNetnsID()
		if err != nil {
			t.Fatal(err)
		}
		ns = netnsPrefix + id + "-" + role
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	if r := runCmd(20*time.Second, nil, nil, netnsTools.ip, "netns", "add", ns); r.Code != 0 {
		t.Fatalf("ip netns add %s: %s", ns, r)
	}
	t.Cleanup(func() {
		if err := deleteNetns(netnsTools.ip, ns); err != nil {
			t.Errorf("deleting namespace %s: %v", ns, err)
		}
	})
	if r := runCmd(20*time.Second, nil, nil, netnsTools.ip, "-n", ns, "link", "set", "lo", "up"); r.Code != 0 {
		t.Fatalf("ip -n %s link set lo up: %s", ns, r)
	}
	r := runCmd(20*time.Second, nil, nil, netnsTools.ip, "-n", ns, "-o", "link", "show")
	if r.Code != 0 {
		t.Fatalf("ip -n %s link show: %s", ns, r)
	}
	if links := strings.Split(strings.TrimSpace(string(r.Stdout)), "\n"); len(links) != 1 || !strings.Contains(links[0], ": lo:") {
		t.Fatalf("namespace %s should have only lo, has:\n%s", ns, r.Stdout)
	}
	return ns
}

// sysSetns is setns(2)'s number per architecture: the frozen syscall
// package lacks it, and golang.org/x/sys is not a direct dependency.
var sysSetns = map[string]uintptr{
	"amd64": 308, "arm64": 268, "riscv64": 268, "loong64": 268,
	"386": 346, "arm": 375, "ppc64": 350, "ppc64le": 350, "s390x": 339,
}

// inNetns runs f on an OS thread that has entered the network namespace ns:
// sockets f creates (listeners, dials) belong to ns and keep working after f
// returns, from any goroutine. f must create its sockets itself, not in
// goroutines it starts.
//
// The thread goes back to the test's namespace afterwards and lives on: a
// thread that exits would fire the Pdeathsig (SIGKILL) of every process
// spawned from it, and spawn's children have one.
func inNetns(ns string, f func() error) error {
	nr, ok := sysSetns[runtime.GOARCH]
	if !ok {
		return fmt.Errorf("setns: syscall number unknown for GOARCH %s", runtime.GOARCH)
	}
	setns := func(path string) error {
		fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		if _, _, errno := syscall.RawSyscall(nr, uintptr(fd), syscall.CLONE_NEWNET, 0); errno != 0 {
			return fmt.Errorf("setns %s: %w", path, errno)
		}
		return nil
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := syscall.Open("/proc/thread-self/ns/net", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open this thread's namespace: %w", err)
			return
		}
		if err := setns(filepath.Join("/run/netns", ns)); err != nil {
			syscall.Close(home)
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		ferr := f()
		_, _, errno := syscall.RawSyscall(nr, uintptr(home), syscall.CLONE_NEWNET, 0)
		syscall.Close(home)
		if errno != 0 {
			errc <- fmt.Errorf("setns back from %s: %w", ns, errno)
			select {} // keep the thread (in ns) locked and alive: nothing else may run on it
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// startTunnelIn is startTunnel inside namespace ns (`ip netns exec` execs
// the binary, so SIGTERM at cleanup reaches tunnel itself).
func startTunnelIn(t *testing.T, ns, name, home string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, nil, netnsTools.ip,
		append([]string{"netns", "exec", ns, tunnelBin}, tunnelArgs(home, args...)...)...)
}

// chromeRun is one headless Chromium page load.
type chromeRun struct {
	URL   string
	Flags []string // proxy settings and the like
	// Screenshot, if set, is where Chromium writes a PNG of the page.
	Screenshot string
}

// chromeDeadline bounds a whole Chromium run; the page itself gets
// chromePageTimeout (--timeout) to load before Chromium stops it and dumps
// what it has.
const (
	chromePageTimeout = 15 * time.Second
	chromeDeadline    = 30 * time.Second
)

// runChromium loads c.URL with headless Chromium inside namespace ns and
// returns the result; Stdout is the DOM after the load (--dump-dom).
// Chromium gets a fresh profile and HOME, and its whole process group is
// killed at chromeDeadline.
func runChromium(t *testing.T, ns string, c chromeRun) result {
	t.Helper()
	bin := needChromium(t)
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile")
	home := filepath.Join(dir, "home")
	for _, d := range []string{profile, home} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"netns", "exec", ns, bin,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
		"--disable-features=OptimizationHints,MediaRouter,AutofillServerCommunication,NetworkTimeServiceQuerying",
		"--disable-dev-shm-usage", "--user-data-dir=" + profile,
		fmt.Sprintf("--timeout=%d", chromePageTimeout.Milliseconds()),
	}
	args = append(args, c.Flags...)
	if c.Screenshot != "" {
		args = append(args, "--screenshot="+c.Screenshot, "--window-size=800,600")
	}
	args = append(args, "--dump-dom", c.URL)
	env := []string{"HOME=" + home, "XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache")}
	t.Logf("chromium (in %s): %s", ns, strings.Join(args[3:], " "))
	r := runCmd(chromeDeadline, env, nil, netnsTools.ip, args...)
	t.Logf("chromium done in %s, exit %d", r.Elapsed.Round(time.Millisecond), r.Code)
	return r
}

// chromeNoise drops the lines every headless Chromium prints in a container
// (no D-Bus, no fonts config; Debian's /etc/chromium.d/dev-shm choking on
// df's output) from its stderr.
func chromeNoise(stderr []byte) string {
	var keep []string
	for _, line := range strings.Split(string(stderr), "\n") {
		if line == "" || strings.Contains(line, "dbus") || strings.Contains(line, "Fontconfig") ||
			strings.Contains(line, "bus.cc") || strings.Contains(line, "object_proxy") ||
			strings.Contains(line, "unexpected operator") {
			continue
		}
		keep = append(keep, line)
	}
	return tail(strings.Join(keep, "\n"), 30, 8<<10)
}

//go:build linux

package e2e

// Long-running processes (tunnel daemons, sshd) and one-shot commands, with
// their output captured to files and hard deadlines on everything.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stopTimeout is how long a daemon may take to exit after SIGTERM/SIGINT.
const stopTimeout = 5 * time.Second

// proc is a background process whose stdout and stderr go to logPath.
type proc struct {
	name    string
	argv    []string
	logPath string
	cmd     *exec.Cmd
	started time.Time

	done    chan struct{} // closed when Wait returned
	waitErr error         // valid after done

	mu         sync.Mutex
	expectExit bool // set by kill9/stop/allowExit: exiting is not a failure
}

// cleanEnv is the test's environment without TUNNEL_* variables, so that a
// developer's own settings cannot leak into the processes under test.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "TUNNEL_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// tunnelArgs prepends the global flags every tunnel process gets.
func tunnelArgs(home string, args ...string) []string {
	out := []string{"--home", home}
	if lvl := os.Getenv("E2E_LOG_LEVEL"); lvl != "" {
		out = append(out, "--log-level", lvl)
	}
	return append(out, args...)
}

// spawn starts bin with args; output goes to logDir/name.log.
func spawn(name, logDir string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(logDir, sanitize(name)+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.Env = cleanEnv(env...)
	// Best effort: never outlive the test binary.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{
		name: name, argv: append([]string{bin}, args...), logPath: logPath,
		cmd: cmd, started: time.Now(), done: make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// startTunnel starts `tunnel --home HOME ARGS…` for the duration of the test.
// At cleanup it sends SIGTERM and fails the test unless the process exits
// with status 0 within stopTimeout; on failure its log is dumped.
func startTunnel(t *testing.T, name, home string, env []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, name, env, tunnelBin, tunnelArgs(home, args...)...)
}

// startCmd is startTunnel for any command line (e.g. tunnel under a wrapper).
func startCmd(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p, err := spawn(name, t.TempDir(), env, bin, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("started %s (pid %d): %s", name, p.cmd.Process.Pid, p.cmdline())
	t.Cleanup(func() {
		if err := p.shutdown(); err != nil {
			t.Errorf("%v", err)
		}
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

// shutdown stops the process with SIGTERM and reports any deviation from the
// contract (exit status 0 within stopTimeout, no exit before being asked).
func (p *proc) shutdown() error {
	if p.exited() {
		if p.expected() {
			return nil
		}
		return fmt.Errorf("%s exited on its own during the test (%s); log: %s", p.name, p.exitDesc(), p.logPath)
	}
	code, took, err := p.stop(syscall.SIGTERM, stopTimeout)
	if err != nil {
		return err
	}
	if code != 0 {
		return fmt.Errorf("%s: SIGTERM: %s after %s, want exit status 0", p.name, p.exitDesc(), took.Round(time.Millisecond))
	}
	return nil
}

func (p *proc) cmdline() string { return strings.Join(p.argv, " ") }

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *proc) expected() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.expectExit
}

// allowExit marks the process as allowed to exit on its own.
func (p *proc) allowExit() {
	p.mu.Lock()
	p.expectExit = true
	p.mu.Unlock()
}

// stop sends sig and waits up to timeout. It returns the exit code (-1 when
// killed by a signal) and how long the exit took; on timeout it SIGKILLs the
// process and returns an error.
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) (int, time.Duration, error) {
	p.allowExit()
	start := time.Now()
	if p.exited() {
		return p.exitCode(), 0, nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return -1, 0, fmt.Errorf("%s: signal %v: %w", p.name, sig, err)
	}
	select {
	case <-p.done:
		return p.exitCode(), time.Since(start), nil
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1, time.Since(start), fmt.Errorf("%s did not exit within %s of %v (killed with SIGKILL)", p.name, timeout, sig)
	}
}

// kill9 kills the process with SIGKILL and waits for it.
func (p *proc) kill9() {
	p.allowExit()
	_ = p.cmd.Process.Kill()
	<-p.done
}

// waitExit waits up to timeout for the process to exit by itself.
func (p *proc) waitExit(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (p *proc) exitCode() int {
	if p.waitErr == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func (p *proc) exitDesc() string {
	if !p.exited() {
		return "still running"
	}
	return describeExit(p.waitErr)
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by signal " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	return err.Error()
}

// log returns the whole log so far.
func (p *proc) log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// logSize is the current log length, for logSince.
func (p *proc) logSize() int64 {
	st, err := os.Stat(p.logPath)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (p *proc) logSince(off int64) string {
	b, _ := os.ReadFile(p.logPath)
	if off > int64(len(b)) {
		off = 0
	}
	return string(b[off:])
}

// count is how many log lines contain s.
func (p *proc) count(s string) int {
	n := 0
	for _, line := range strings.Split(p.log(), "\n") {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}

// waitLog polls the log until s has appeared at least n times.
func (p *proc) waitLog(s string, n int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if p.count(s) >= n {
			return true
		}
		if time.Now().After(deadline) || (p.exited() && p.count(s) < n) {
			return p.count(s) >= n
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dump writes the tail of the log into the test output.
func (p *proc) dump(t *testing.T) {
	t.Helper()
	t.Logf("---- %s (%s) log %s ----\n%s\n---- end of %s log ----",
		p.name, p.exitDesc(), p.logPath, tail(p.log(), 200, 48<<10), p.name)
}

// tail keeps at most the last maxLines lines and maxBytes bytes of s.
func tail(s string, maxLines, maxBytes int) string {
	cut := false
	if len(s) > maxBytes {
		s = s[len(s)-maxBytes:]
		cut = true
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
		cut = true
	}
	out := strings.Join(lines, "\n")
	if cut {
		out = "[… earlier output cut …]\n" + out
	}
	return out
}

// logEntry is one line of a tunnel log; JSON when stderr is not a terminal.
type logEntry struct {
	Level   string
	Message string
	Raw     string
}

func parseLog(s string) []logEntry {
	var out []logEntry
	for _, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		e := logEntry{Raw: line}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			e.Level, _ = m["level"].(string)
			e.Message, _ = m["message"].(string)
			if e.Message == "" {
				e.Message, _ = m["msg"].(string)
			}
		} else {
			e.Message = line
			up := strings.ToUpper(line)
			for _, lv := range []struct{ tag, level string }{
				{" ERR ", "error"}, {" WRN ", "warn"}, {" FTL ", "fatal"}, {"ERROR", "error"}, {"WARN", "warn"},
			} {
				if strings.Contains(up, lv.tag) {
					e.Level = lv.level
					break
				}
			}
		}
		out = append(out, e)
	}
	return out
}

// result is the outcome of a one-shot command.
type result struct {
	Stdout, Stderr []byte
	Code           int // -1: killed by a signal or did not start
	Err            error
	Elapsed        time.Duration
	TimedOut       bool
}

func (r result) String() string {
	return fmt.Sprintf("code=%d err=%v elapsed=%s timedOut=%v\nstdout: %s\nstderr: %s",
		r.Code, r.Err, r.Elapsed.Round(time.Millisecond), r.TimedOut,
		tail(string(r.Stdout), 40, 4<<10), tail(string(r.Stderr), 40, 4<<10))
}

// runCmd runs a command to completion with a hard deadline. The command gets
// its own process group, and the whole group is killed at the deadline, so a
// hung ProxyCommand cannot keep the test waiting.
func runCmd(timeout time.Duration, env []string, stdin io.Reader, name string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv(env...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	start := time.Now()
	err := cmd.Run()
	r := result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), Err: err, Elapsed: time.Since(start), Code: -1}
	if cmd.ProcessState != nil {
		r.Code = cmd.ProcessState.ExitCode()
		// Reap anything left in the group (e.g. an orphaned ProxyCommand).
		_ = syscall.Kill(-cmd.ProcessState.Pid(), syscall.SIGKILL)
	}
	r.TimedOut = ctx.Err() != nil
	return r
}

// runTunnel runs a one-shot tunnel command (no implicit --home).
func runTunnel(timeout time.Duration, env []string, args ...string) result {
	return runCmd(timeout, env, nil, tunnelBin, args...)
}

// tunnelID returns the ID of the node whose home is home, creating it.
func tunnelID(t *testing.T, home string) string {
	t.Helper()
	r := runTunnel(20*time.Second, nil, "--home", home, "id")
	if r.Code != 0 {
		t.Fatalf("tunnel --home %s id: %s", home, r)
	}
	id := strings.TrimSpace(string(r.Stdout))
	if !idRE.MatchString(id) {
		t.Fatalf("tunnel id printed %q, want 52 z-base-32 characters", r.Stdout)
	}
	return id
}

// Ports. Each is taken from the kernel (bind to :0, close) and never handed
// out twice in one run.
var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

func freePort(t *testing.T, network string) int {
	t.Helper()
	p, err := freePortErr(network)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func freePortErr(network string) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for i := 0; i < 50; i++ {
		var port int
		switch network {
		case "tcp":
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		case "udp":
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			port = c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
		default:
			return 0, fmt.Errorf("freePort: network %q", network)
		}
		if !ports[port] {
			ports[port] = true
			return port, nil
		}
	}
	return 0, errors.New("no free port found")
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// waitTCP polls until something accepts on address, or p (if not nil) dies.
func waitTCP(address string, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", address, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited (%s) before listening on %s", p.name, p.exitDesc(), address)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %s: %v", address, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

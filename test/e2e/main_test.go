//go:build linux

// Package e2e runs the real tunnel binary with real clients (OpenSSH, OpenBSD
// nc, curl) against a throwaway sshd and servers of its own, all on loopback.
//
// TestMain builds the binary once; the system prerequisites (root for
// useradd, /usr/sbin/sshd, ssh, ssh-keygen, OpenBSD nc, curl) are checked per
// test: missing ones fail the test when CI is set and skip it otherwise.
// `make deps` installs them on Debian.
//
// Knobs (environment):
//
//	E2E_LOG_LEVEL=debug  pass --log-level to every tunnel process
//	E2E_RACE=1           build the binary with -race
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// tunnelBin is the absolute path of the binary under test, set by TestMain.
var tunnelBin string

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	root, err := moduleRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: cannot find the module root: %v\n", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "tunnel-e2e-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)

	bin := filepath.Join(dir, "tunnel")
	args := []string{"build", "-tags", "nethttpomithttp2", "-o", bin} // as make build
	if os.Getenv("E2E_RACE") != "" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/tunnel")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go %s (in %s) failed: %v\n%s\n", strings.Join(args, " "), root, err, out)
		return 1
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", bin, time.Since(start).Round(time.Millisecond))
	tunnelBin = bin

	code := m.Run()
	if err := teardownShared(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: shared fixture teardown: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// moduleRoot finds the directory holding go.mod: `go env GOMOD` first, then
// a walk up from the working directory.
func moduleRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" && p != os.DevNull {
			return filepath.Dir(p), nil
		}
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

var (
	prereqOnce    sync.Once
	prereqMissing []string
)

// requireSystem skips (or, under CI, fails) the test unless the machine has
// what the ssh/curl scenarios need.
func requireSystem(t *testing.T) {
	t.Helper()
	prereqOnce.Do(func() { prereqMissing = checkPrereqs() })
	if len(prereqMissing) == 0 {
		return
	}
	msg := "e2e prerequisites missing: " + strings.Join(prereqMissing, "; ") +
		" (as root, `make deps` installs them)"
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

func checkPrereqs() []string {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "not root (needed for useradd and sshd)")
	}
	if st, err := os.Stat("/usr/sbin/sshd"); err != nil || st.Mode()&0o111 == 0 {
		missing = append(missing, "/usr/sbin/sshd (openssh-server)")
	}
	for _, tool := range []struct{ name, pkg string }{
		{"ssh", "openssh-client"}, {"ssh-keygen", "openssh-client"},
		{"curl", "curl"}, {"useradd", "passwd"}, {"passwd", "passwd"},
	} {
		if _, err := lookPath(tool.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", tool.name, tool.pkg))
		}
	}
	if !haveOpenBSDNetcat() {
		missing = append(missing, "nc with -X (netcat-openbsd)")
	}
	return missing
}

func haveOpenBSDNetcat() bool {
	if _, err := exec.LookPath("nc"); err != nil {
		return false
	}
	out, _ := exec.Command("nc", "-h").CombinedOutput() // exits non-zero
	s := string(out)
	return strings.Contains(s, "OpenBSD netcat") || strings.Contains(s, "-X proxy_")
}

// lookPath is exec.LookPath that also searches the sbin directories, which a
// CI shell's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

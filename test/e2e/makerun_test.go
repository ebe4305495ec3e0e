//go:build linux

package e2e

// `make run` prints next steps; a user pastes them. This runs `make run`
// in a network namespace of its own (it listens on the fixed ports
// 127.0.0.1:1080 and :7443, which must not collide with anything here),
// with a HOME of its own, and runs the printed lines as printed, in that
// namespace: the device on this machine, the ssh setup, and ssh by ID and
// by name, against a real sshd on port 22 of the namespace.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMakeRunNextSteps(t *testing.T) {
	e := getEnv(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: make run goes in a network namespace of its own")
	}
	for _, tool := range []string{"make", "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	// make builds with the go of this test, its caches kept (a fresh HOME
	// would mean a cold build).
	goEnv := func(name string) string {
		out, err := exec.Command("go", "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	env := cleanEnv("HOME="+home, "USER="+sshUser, "XDG_CONFIG_HOME=",
		"GOCACHE="+goEnv("GOCACHE"), "GOMODCACHE="+goEnv("GOMODCACHE"), "GOPATH="+goEnv("GOPATH"),
		"GOFLAGS="+goEnv("GOFLAGS"), "GOTOOLCHAIN=local")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "-n", "--", "bash", "-c", "ip link set lo up && exec make --no-print-directory -C \"$0\" run", root)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	printed := make(chan string, 1)
	var lines []string
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(out)
		sent := false
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if !sent && strings.Contains(sc.Text(), "socksd listening") {
				printed <- strings.Join(lines, "\n")
				sent = true
			}
		}
		if !sent {
			close(printed)
		}
	}()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		<-logged
		if t.Failed() {
			t.Logf("make run printed:\n%s", tail(strings.Join(lines, "\n"), 80, 16<<10))
		}
	}()
	var text string
	select {
	case s, ok := <-printed:
		if !ok {
			t.Fatal("make run ended before socksd was listening")
		}
		text = s
	case <-ctx.Done():
		t.Fatal("make run: socksd not listening after 4 minutes")
	}
	pid := cmd.Process.Pid // unshare exec'd bash, which exec'd make: the namespace's first process

	// The printed lines, as a user would copy them.
	bin := filepath.Join(root, "bin", "tunnel")
	step := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(`(?m)^\s+(` + re + `)\s*$`).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("make run printed no line matching %q:\n%s", re, text)
		}
		return m[1]
	}
	publish := step(regexp.QuoteMeta(bin) + ` --home \S+ publish -public 22`)
	install := step(regexp.QuoteMeta(bin) + ` ssh-config --install`)
	sshByID := step(`ssh \$USER@\$\(` + regexp.QuoteMeta(bin) + ` --home \S+ id\)\.tunnel`)
	sshByName := step(regexp.QuoteMeta(bin) + ` name add mypi .* && ssh \$USER@mypi\.tunnel`)
	if strings.Contains(text, " tunnel publish -public") || strings.Contains(text, "\n       tunnel ") {
		t.Errorf("a step names a bare 'tunnel', which is not on PATH:\n%s", text)
	}

	// A real sshd on port 22 of the namespace, with the fixture's keys.
	conf, err := os.ReadFile(filepath.Join(e.sshd.dir, "sshd_config"))
	if err != nil {
		t.Fatal(err)
	}
	sshdConf := filepath.Join(t.TempDir(), "sshd_config")
	c := regexp.MustCompile(`(?m)^Port \d+$`).ReplaceAllString(string(conf), "Port 22")
	c = regexp.MustCompile(`(?m)^PidFile .*$`).ReplaceAllString(c, "PidFile "+filepath.Join(filepath.Dir(sshdConf), "sshd.pid"))
	if err := os.WriteFile(sshdConf, []byte(c), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := []string{"-t", strconv.Itoa(pid), "-n", "--"}
	startCmd(t, "sshd-22", nil, "nsenter", append(ns, "/usr/sbin/sshd", "-D", "-e", "-f", sshdConf)...)

	// 1. The device, as printed.
	dev := startCmd(t, "device (step 1)", env, "nsenter", append(ns, "bash", "-c", "exec "+publish)...)
	// 2. The ssh setup, as printed: it writes $HOME/.ssh of this test.
	r := runCmd(time.Minute, env, nil, "bash", "-c", install)
	if r.Code != 0 {
		t.Fatalf("step 2, %s: %s", install, r)
	}
	block := filepath.Join(home, ".ssh", "tunnel.conf")
	if _, err := os.Stat(block); err != nil {
		t.Fatalf("step 2 wrote no %s: %v (%s)", block, err, r)
	}
	// 3. ssh as printed, but ssh reads the ~/.ssh of the passwd entry, not
	// $HOME: -F names the block step 2 wrote; the rest is who logs in, and
	// no prompt (BatchMode) or known_hosts file of ours.
	sshOpts := fmt.Sprintf("ssh -F %s -i %s -o IdentitiesOnly=yes -o BatchMode=yes -o UserKnownHostsFile=/dev/null -o GlobalKnownHostsFile=/dev/null ",
		block, filepath.Join(e.sshd.dir, "id_ed25519"))
	run := func(line, word string) result {
		line = strings.Replace(line, "ssh ", sshOpts, 1) + " echo " + word
		return runCmd(time.Minute, env, nil, "nsenter", append(ns, "bash", "-c", line)...)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		r = run(sshByID, "by-id-ok")
		if r.Code == 0 && strings.TrimSpace(string(r.Stdout)) == "by-id-ok" {
			break
		}
		if time.Now().After(deadline) || dev.exited() {
			t.Fatalf("step 3, %s: %s", sshByID, r)
		}
		time.Sleep(500 * time.Millisecond) // the device registering
	}
	t.Logf("ssh by ID, as printed: ok in %s", r.Elapsed.Round(time.Millisecond))
	// `name add` says what it did, then ssh's output.
	if r = run(sshByName, "by-name-ok"); r.Code != 0 || !strings.HasSuffix(string(r.Stdout), "\nby-name-ok\n") {
		t.Fatalf("step 3, %s: %s", sshByName, r)
	}
	t.Logf("name add + ssh by name, as printed: ok in %s", r.Elapsed.Round(time.Millisecond))
}

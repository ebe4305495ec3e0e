//go:build linux

package main

// The baseline: a throwaway OpenSSH sshd on a free loopback port, a user to
// log in as with a fresh key, and `ssh -D` to it (default cipher) as the
// SOCKS proxy tunnel is compared with. Same recipe as test/e2e/sshd_test.go.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tunnel-dev/tunnel/test/internal/sshuser"
)

const sshUser = "tunnelbench"

type sshFixture struct {
	dir        string
	port       int
	sshd       *proc
	clientConf string
	key        *sshuser.Key
	cipher     string // negotiated by default, from ssh -v
}

// startSSHD creates the user if needed, writes keys and configs, starts
// sshd and checks a direct login. Cleanup is registered with atExit.
func startSSHD(work string) (*sshFixture, error) {
	s := &sshFixture{dir: filepath.Join(work, "sshd")}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return nil, err
	}
	atExit(func() { s.key.Remove() })
	u, err := sshuser.Ensure(sshUser)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // sshd's privilege-separation dir
		return nil, err
	}
	hostKey := filepath.Join(s.dir, "ssh_host_ed25519_key")
	userKey := filepath.Join(s.dir, "id_ed25519")
	for _, k := range []string{hostKey, userKey} {
		if out, err := runQuick(30*time.Second, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tunnel-bench", "-f", k); err != nil {
			return nil, fmt.Errorf("ssh-keygen: %v\n%s", err, out)
		}
	}
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		return nil, err
	}
	if s.key, err = sshuser.Install(u, strings.TrimSpace(string(pub)), "tunnel-bench"); err != nil {
		return nil, fmt.Errorf("installing authorized_keys: %w", err)
	}
	if s.port, err = freePort(); err != nil {
		return nil, err
	}
	conf := filepath.Join(s.dir, "sshd_config")
	sshdConfig := fmt.Sprintf(`# throwaway sshd for the tunnel benchmark
Port %d
ListenAddress 127.0.0.1
HostKey %s
PidFile %s
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin no
AllowUsers %s
AllowTcpForwarding yes
StrictModes yes
MaxStartups 100:30:200
MaxSessions 100
X11Forwarding no
PrintMotd no
PrintLastLog no
LogLevel INFO
`, s.port, hostKey, filepath.Join(s.dir, "sshd.pid"), sshUser)
	if err := os.WriteFile(conf, []byte(sshdConfig), 0o600); err != nil {
		return nil, err
	}
	if out, err := runQuick(20*time.Second, "/usr/sbin/sshd", "-t", "-f", conf); err != nil {
		return nil, fmt.Errorf("sshd -t rejected the config: %v\n%s", err, out)
	}
	s.clientConf = filepath.Join(s.dir, "ssh_config")
	clientConfig := fmt.Sprintf(`# ssh client settings for the tunnel benchmark (default cipher)
Host *
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  GlobalKnownHostsFile /dev/null
  LogLevel ERROR
  BatchMode yes
  ConnectTimeout 10
  ServerAliveInterval 5
  ServerAliveCountMax 3
  ControlMaster no
  ControlPath none
  ExitOnForwardFailure yes
`, sshUser, userKey)
	if err := os.WriteFile(s.clientConf, []byte(clientConfig), 0o600); err != nil {
		return nil, err
	}
	s.sshd, err = daemon("sshd", work, "/usr/sbin/sshd", "-D", "-e", "-f", conf)
	if err != nil {
		return nil, err
	}
	if err := waitTCP(addr(s.port), 15*time.Second, s.sshd); err != nil {
		return nil, err
	}
	// The fixture must work before anything is measured through it; -v
	// also tells which cipher the default settings negotiate.
	out, err := runQuick(30*time.Second, "ssh", "-v", "-F", s.clientConf, "-p", strconv.Itoa(s.port), sshUser+"@127.0.0.1", "echo direct-ok")
	if err != nil || !strings.Contains(out, "direct-ok") {
		return nil, fmt.Errorf("direct ssh login to the bench sshd failed: %v\n%s\nsshd log:\n%s", err, lastLines(out, 30), s.sshd.logTail(30))
	}
	if m := regexp.MustCompile(`kex: client->server cipher: (\S+)`).FindStringSubmatch(out); m != nil {
		s.cipher = m[1]
	}
	return s, nil
}

// startSOCKS runs `ssh -D 127.0.0.1:PORT -N` to the sshd.
func (s *sshFixture) startSOCKS(work string) (*proc, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	socks := addr(port)
	p, err := daemon("ssh-D", work, "ssh", "-F", s.clientConf, "-N", "-D", socks, "-p", strconv.Itoa(s.port), sshUser+"@127.0.0.1")
	if err != nil {
		return nil, "", err
	}
	if err := waitTCP(socks, 20*time.Second, p); err != nil {
		return nil, "", err
	}
	return p, socks, nil
}

// runQuick runs a short command with a deadline and returns its combined
// output.
func runQuick(timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: no result within %s", name, timeout)
	}
	return string(out), err
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

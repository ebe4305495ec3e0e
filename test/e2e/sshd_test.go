//go:build linux

package e2e

// A throwaway OpenSSH server on a free loopback port, a test user to log in
// as, and an ssh client configuration that never prompts and trusts any host
// key (the device is reached by a name that changes every run).

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tunnel-dev/tunnel/test/internal/sshuser"
)

const sshUser = "tunnele2e"

type sshServer struct {
	dir        string // host key, user key, configs, log
	port       int
	proc       *proc
	clientConf string
	userHome   string
	key        *sshuser.Key // our line in the user's authorized_keys
}

// startSSHD creates the user if needed, generates fresh keys and starts sshd.
// It checks a direct (untunneled) login before returning.
func startSSHD() (*sshServer, error) { return startSSHDKeys("ed25519") }

// startSSHDKeys is startSSHD with fresh host keys of each of these types
// (ssh-keygen -t).
func startSSHDKeys(hostKeyTypes ...string) (*sshServer, error) {
	dir, err := os.MkdirTemp("", "tunnel-e2e-sshd-")
	if err != nil {
		return nil, err
	}
	s := &sshServer{dir: dir}
	fail := func(err error) (*sshServer, error) {
		s.stop()
		return nil, err
	}

	u, err := sshuser.Ensure(sshUser)
	if err != nil {
		return fail(err)
	}
	s.userHome = u.HomeDir
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fail(err)
	}

	userKey := filepath.Join(dir, "id_ed25519")
	keygen := [][2]string{{"ed25519", userKey}}
	var hostKeys strings.Builder
	for _, typ := range hostKeyTypes {
		k := filepath.Join(dir, "ssh_host_"+typ+"_key")
		keygen = append(keygen, [2]string{typ, k})
		fmt.Fprintf(&hostKeys, "HostKey %s\n", k)
	}
	for _, k := range keygen {
		if r := runCmd(30*time.Second, nil, nil, "ssh-keygen", "-q", "-t", k[0], "-N", "", "-C", "tunnel-e2e", "-f", k[1]); r.Code != 0 {
			return fail(fmt.Errorf("ssh-keygen: %s", r))
		}
	}
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		return fail(err)
	}
	if s.key, err = sshuser.Install(u, strings.TrimSpace(string(pub)), "tunnel-e2e"); err != nil {
		return fail(fmt.Errorf("installing authorized_keys: %w", err))
	}

	port, err := freePortErr("tcp")
	if err != nil {
		return fail(err)
	}
	s.port = port
	conf := filepath.Join(dir, "sshd_config")
	sshdConfig := fmt.Sprintf(`# throwaway sshd for the tunnel e2e tests
Port %d
ListenAddress 127.0.0.1
%sPidFile %s
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
PubkeyAuthentication yes
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin no
AllowUsers %s
StrictModes yes
MaxStartups 100:30:200
MaxSessions 100
MaxAuthTries 3
LoginGraceTime 30
X11Forwarding no
PrintMotd no
PrintLastLog no
LogLevel INFO
`, port, hostKeys.String(), filepath.Join(dir, "sshd.pid"), sshUser)
	if err := os.WriteFile(conf, []byte(sshdConfig), 0o600); err != nil {
		return fail(err)
	}
	if r := runCmd(20*time.Second, nil, nil, "/usr/sbin/sshd", "-t", "-f", conf); r.Code != 0 {
		return fail(fmt.Errorf("sshd -t rejected the config: %s", r))
	}

	s.clientConf = filepath.Join(dir, "ssh_config")
	clientConfig := fmt.Sprintf(`# ssh client settings for the tunnel e2e tests
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
  RequestTTY no
`, sshUser, userKey)
	if err := os.WriteFile(s.clientConf, []byte(clientConfig), 0o600); err != nil {
		return fail(err)
	}

	p, err := spawn("sshd", dir, nil, "/usr/sbin/sshd", "-D", "-e", "-f", conf)
	if err != nil {
		return fail(err)
	}
	s.proc = p
	if err := waitTCP(addr(port), 15*time.Second, p); err != nil {
		return fail(fmt.Errorf("sshd: %w\n%s", err, tail(p.log(), 50, 8<<10)))
	}
	// The fixture itself must work before any tunnel is blamed.
	r := s.sshDirect(30*time.Second, "echo direct-ok")
	if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "direct-ok" {
		return fail(fmt.Errorf("direct ssh to the test sshd failed: %s\nsshd log:\n%s", r, tail(p.log(), 50, 8<<10)))
	}
	return s, nil
}

// stop ends sshd (its exit status on SIGTERM is not ours to judge), removes
// our key and the temp dir.
func (s *sshServer) stop() {
	if s.proc != nil && !s.proc.exited() {
		_, _, _ = s.proc.stop(syscall.SIGTERM, stopTimeout)
	}
	s.key.Remove()
	_ = os.RemoveAll(s.dir)
}

// sshDirect logs in without any tunnel.
func (s *sshServer) sshDirect(timeout time.Duration, remote string) result {
	return runCmd(timeout, nil, nil, "ssh", "-F", s.clientConf, "-p", strconv.Itoa(s.port), sshUser+"@127.0.0.1", remote)
}

// ssh runs `ssh -o ProxyCommand=PROXY user@HOST REMOTE`.
func (s *sshServer) ssh(timeout time.Duration, env []string, stdin io.Reader, proxy, host, remote string) result {
	return runCmd(timeout, env, stdin, "ssh", "-F", s.clientConf, "-o", "ProxyCommand="+proxy, sshUser+"@"+host, remote)
}

// ncProxy is the ProxyCommand of the product's documented ssh line.
func ncProxy(socksAddr string) string {
	return "nc -X 5 -x " + socksAddr + " %h %p"
}

// checkEcho runs `echo WORD` over ssh and reports anything but a clean WORD.
func (s *sshServer) checkEcho(timeout time.Duration, env []string, proxy, host, word string) error {
	r := s.ssh(timeout, env, nil, proxy, host, "echo "+word)
	if r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != word {
		return fmt.Errorf("ssh via %q to %s: want %q on stdout, got %s", proxy, host, word, r)
	}
	return nil
}

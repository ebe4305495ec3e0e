package e2e

// A throwaway OpenSSH server on a free loopback port, a test user to log in
// as, and an ssh client configuration that never prompts and trusts any host
// key (the device is reached by a name that changes every run).

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const sshUser = "tunnele2e"

type sshServer struct {
	dir        string // host key, user key, configs, log
	port       int
	proc       *proc
	clientConf string
	userHome   string
	keyMarker  string // comment on our authorized_keys line
	authKeys   string // path of the user's authorized_keys
}

// startSSHD creates the user if needed, generates fresh keys and starts sshd.
// It checks a direct (untunneled) login before returning.
func startSSHD() (*sshServer, error) {
	dir, err := os.MkdirTemp("", "tunnel-e2e-sshd-")
	if err != nil {
		return nil, err
	}
	s := &sshServer{dir: dir}
	fail := func(err error) (*sshServer, error) {
		s.stop()
		return nil, err
	}

	u, err := ensureUser()
	if err != nil {
		return fail(err)
	}
	s.userHome = u.HomeDir
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fail(err)
	}

	hostKey := filepath.Join(dir, "ssh_host_ed25519_key")
	userKey := filepath.Join(dir, "id_ed25519")
	for _, k := range []string{hostKey, userKey} {
		if r := runCmd(30*time.Second, nil, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tunnel-e2e", "-f", k); r.Code != 0 {
			return fail(fmt.Errorf("ssh-keygen: %s", r))
		}
	}
	pub, err := os.ReadFile(userKey + ".pub")
	if err != nil {
		return fail(err)
	}
	if err := s.installKey(u, strings.TrimSpace(string(pub))); err != nil {
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
StrictModes yes
MaxStartups 100:30:200
MaxSessions 100
MaxAuthTries 3
LoginGraceTime 30
X11Forwarding no
PrintMotd no
PrintLastLog no
LogLevel INFO
`, port, hostKey, filepath.Join(dir, "sshd.pid"), sshUser)
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

// ensureUser creates the test user if absent and unlocks it: with UsePAM no,
// sshd refuses even key logins to a locked account ("!" in /etc/shadow).
func ensureUser() (*user.User, error) {
	if _, err := user.Lookup(sshUser); err != nil {
		useradd, err := lookPath("useradd")
		if err != nil {
			return nil, err
		}
		if r := runCmd(30*time.Second, nil, nil, useradd, "-m", "-s", "/bin/bash", sshUser); r.Code != 0 {
			return nil, fmt.Errorf("useradd: %s", r)
		}
	}
	passwd, err := lookPath("passwd")
	if err != nil {
		return nil, err
	}
	if r := runCmd(30*time.Second, nil, nil, passwd, "-d", sshUser); r.Code != 0 {
		return nil, fmt.Errorf("passwd -d: %s", r)
	}
	u, err := user.Lookup(sshUser)
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.MkdirAll(u.HomeDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Chown(u.HomeDir, uid, gid); err != nil {
		return nil, err
	}
	// StrictModes: the home must not be group- or world-writable.
	if st, err := os.Stat(u.HomeDir); err == nil && st.Mode().Perm()&0o022 != 0 {
		if err := os.Chmod(u.HomeDir, st.Mode().Perm()&^0o022); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// installKey appends our public key to the user's authorized_keys (owned by
// the user, 0600, in a 0700 ~/.ssh), dropping lines left by dead runs.
func (s *sshServer) installKey(u *user.User, pub string) error {
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	sshDir := filepath.Join(u.HomeDir, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(sshDir, 0o700); err != nil {
		return err
	}
	if err := os.Chown(sshDir, uid, gid); err != nil {
		return err
	}
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	s.keyMarker = fmt.Sprintf("tunnel-e2e-pid%d-%s", os.Getpid(), hex.EncodeToString(nonce[:]))
	s.authKeys = filepath.Join(sshDir, "authorized_keys")

	old, _ := os.ReadFile(s.authKeys)
	var keep []string
	for _, line := range strings.Split(string(old), "\n") {
		if line == "" || staleMarker(line) {
			continue
		}
		keep = append(keep, line)
	}
	fields := strings.Fields(pub)
	if len(fields) < 2 {
		return fmt.Errorf("odd public key %q", pub)
	}
	keep = append(keep, fields[0]+" "+fields[1]+" "+s.keyMarker)
	if err := os.WriteFile(s.authKeys, []byte(strings.Join(keep, "\n")+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.Chmod(s.authKeys, 0o600); err != nil {
		return err
	}
	return os.Chown(s.authKeys, uid, gid)
}

// staleMarker reports whether an authorized_keys line was left by an e2e run
// whose process is gone.
func staleMarker(line string) bool {
	i := strings.Index(line, "tunnel-e2e-pid")
	if i < 0 {
		return false
	}
	rest := line[i+len("tunnel-e2e-pid"):]
	j := strings.IndexByte(rest, '-')
	if j < 0 {
		return true
	}
	pid, err := strconv.Atoi(rest[:j])
	if err != nil {
		return true
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func (s *sshServer) removeKey() {
	if s.authKeys == "" || s.keyMarker == "" {
		return
	}
	old, err := os.ReadFile(s.authKeys)
	if err != nil {
		return
	}
	var keep []string
	for _, line := range strings.Split(string(old), "\n") {
		if line == "" || strings.Contains(line, s.keyMarker) {
			continue
		}
		keep = append(keep, line)
	}
	out := ""
	if len(keep) > 0 {
		out = strings.Join(keep, "\n") + "\n"
	}
	_ = os.WriteFile(s.authKeys, []byte(out), 0o600)
}

// stop ends sshd (its exit status on SIGTERM is not ours to judge), removes
// our key and the temp dir.
func (s *sshServer) stop() {
	if s.proc != nil && !s.proc.exited() {
		_, _, _ = s.proc.stop(syscall.SIGTERM, stopTimeout)
	}
	s.removeKey()
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

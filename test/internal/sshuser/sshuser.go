// Package sshuser prepares a local account for key logins to a throwaway
// sshd, for the end-to-end suite and the benchmark. It creates the account
// if needed, unlocks it (with UsePAM no, sshd refuses even key logins to a
// locked account), and adds and removes one key in its authorized_keys,
// tagged so that lines left behind by runs that died are dropped.
package sshuser

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Ensure creates the account name if absent, unlocks it, and makes its
// home acceptable to sshd's StrictModes.
func Ensure(name string) (*user.User, error) {
	if _, err := user.Lookup(name); err != nil {
		if out, err := run("useradd", "-m", "-s", "/bin/bash", name); err != nil {
			return nil, fmt.Errorf("useradd %s: %v\n%s", name, err, out)
		}
	}
	if out, err := run("passwd", "-d", name); err != nil {
		return nil, fmt.Errorf("passwd -d %s: %v\n%s", name, err, out)
	}
	u, err := user.Lookup(name)
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

func run(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// Key is one public key installed for a run.
type Key struct {
	AuthKeys string // the authorized_keys file
	Marker   string // the comment tagging our line
}

// Install appends pub to u's authorized_keys (owned by u, 0600, in a 0700
// ~/.ssh), tagged "<tag>-pid<PID>-<random>", dropping lines with the same
// tag whose process is gone.
func Install(u *user.User, pub, tag string) (*Key, error) {
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	sshDir := filepath.Join(u.HomeDir, ".ssh")
	if err := os.MkdirAll(sshDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chmod(sshDir, 0o700); err != nil {
		return nil, err
	}
	if err := os.Chown(sshDir, uid, gid); err != nil {
		return nil, err
	}
	var nonce [4]byte
	_, _ = rand.Read(nonce[:])
	k := &Key{
		AuthKeys: filepath.Join(sshDir, "authorized_keys"),
		Marker:   fmt.Sprintf("%s-pid%d-%s", tag, os.Getpid(), hex.EncodeToString(nonce[:])),
	}
	old, _ := os.ReadFile(k.AuthKeys)
	var keep []string
	for _, line := range strings.Split(string(old), "\n") {
		if line == "" || stale(line, tag) {
			continue
		}
		keep = append(keep, line)
	}
	fields := strings.Fields(pub)
	if len(fields) < 2 {
		return nil, fmt.Errorf("odd public key %q", pub)
	}
	keep = append(keep, fields[0]+" "+fields[1]+" "+k.Marker)
	if err := os.WriteFile(k.AuthKeys, []byte(strings.Join(keep, "\n")+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.Chmod(k.AuthKeys, 0o600); err != nil {
		return nil, err
	}
	return k, os.Chown(k.AuthKeys, uid, gid)
}

// stale reports whether an authorized_keys line was left by a run with
// this tag whose process is gone.
func stale(line, tag string) bool {
	i := strings.Index(line, tag+"-pid")
	if i < 0 {
		return false
	}
	rest := line[i+len(tag)+len("-pid"):]
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

// Remove takes our line out of authorized_keys again. It is safe on a nil
// Key.
func (k *Key) Remove() {
	if k == nil {
		return
	}
	old, err := os.ReadFile(k.AuthKeys)
	if err != nil {
		return
	}
	var keep []string
	for _, line := range strings.Split(string(old), "\n") {
		if line == "" || strings.Contains(line, k.Marker) {
			continue
		}
		keep = append(keep, line)
	}
	out := ""
	if len(keep) > 0 {
		out = strings.Join(keep, "\n") + "\n"
	}
	_ = os.WriteFile(k.AuthKeys, []byte(out), 0o600)
}

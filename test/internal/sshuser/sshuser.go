//go:build linux

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
	"sync"
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
	uid, gid int    // the user's, who must own the file (StrictModes)
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
	fields := strings.Fields(pub)
	if len(fields) < 2 {
		return nil, fmt.Errorf("odd public key %q", pub)
	}
	k.uid, k.gid = uid, gid
	err := k.edit(func(line string) bool { return !stale(line, tag) }, fields[0]+" "+fields[1]+" "+k.Marker)
	if err != nil {
		return nil, err
	}
	return k, nil
}

// editMu serializes edits of authorized_keys within this process (tests
// running in parallel each install and remove a key); a lock file does
// the same between processes.
var editMu sync.Mutex

// edit rewrites authorized_keys keeping the lines keep accepts, then
// adding add (if not empty). The new file replaces the old one whole
// (written beside it, then renamed), owned by the user and 0600, so that
// an sshd reading it meanwhile sees the old keys or the new, never an
// empty file.
func (k *Key) edit(keep func(line string) bool, add string) error {
	editMu.Lock()
	defer editMu.Unlock()
	lock, err := os.OpenFile(k.AuthKeys+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	old, err := os.ReadFile(k.AuthKeys)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	var out []string
	for _, line := range strings.Split(string(old), "\n") {
		if line != "" && keep(line) {
			out = append(out, line)
		}
	}
	if add != "" {
		out = append(out, add)
	}
	text := ""
	if len(out) > 0 {
		text = strings.Join(out, "\n") + "\n"
	}
	tmp, err := os.CreateTemp(filepath.Dir(k.AuthKeys), ".authorized_keys.*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(text)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Chown(k.uid, k.gid)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp.Name(), k.AuthKeys)
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
	_ = k.edit(func(line string) bool { return !strings.Contains(line, k.Marker) }, "")
}

//go:build linux

package e2e

// Keeping name resolution on loopback. A few checks involve a client or
// server that might resolve a name through DNS (curl --socks5 resolving a
// .tunnel name locally; socksd asked for example.com). They run in a private
// mount namespace whose /etc/resolv.conf points at 127.0.0.1, where no DNS
// server listens, so no query can leave the machine whatever they do.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loopbackDNSWrapper returns a command prefix that runs a command with the
// stub resolver, or skips the test if this machine cannot do that (not root,
// no unshare): it never falls back to the real resolver.
func loopbackDNSWrapper(t *testing.T) []string {
	t.Helper()
	stub := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(stub, []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// exit 111: the bind mount failed, so the command never ran.
	const script = `mount --bind "$1" /etc/resolv.conf || exit 111; shift; exec "$@"`
	prefix := []string{"unshare", "-m", "sh", "-c", script, "sh", stub}
	probe := runCmd(10*time.Second, nil, nil, prefix[0], append(prefix[1:], "cat", "/etc/resolv.conf")...)
	if probe.Code != 0 || !strings.Contains(string(probe.Stdout), "nameserver 127.0.0.1") {
		t.Skipf("cannot run with a loopback-only resolver (unshare -m + mount --bind failed), and will not risk a DNS query off loopback: %s", probe)
	}
	return prefix
}

package socks

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tunnel-dev/tunnel/transport"
)

// nobody is the user the other-user client runs as.
const nobody = 65534

// A client of another local user (uid 65534, "nobody", run by root) gets
// 0x02 over SOCKS and 403 over HTTP CONNECT, nothing is dialed for it, and
// socksd logs one line for it however often it tries; the same client
// run as root gets through; with every local user allowed (no Admit), so
// does nobody's.
func TestOwnerOnlyOtherUser(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run a client as another user (uid 65534)")
	}
	bin := helperBinary(t)
	u := startUpstream(t, echo)
	var dials atomic.Int64
	dial := func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		dials.Add(1)
		return u.dial(ctx, host, port)
	}
	sink, log := newLogSink()
	owner := NewOwnerOnly(log)
	front := &HTTPFront{Dial: dial, Log: log, Admit: owner.Admit}
	addr := serve(t, &Server{Dial: dial, Log: log, Admit: owner.Admit, Other: front.ServeConn})

	run := func(uid int, kind, addr string) string {
		t.Helper()
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), clientHelperEnv+"="+kind+" "+addr)
		if uid != 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: nobody}}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid %d: %v\n%s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	for _, tc := range []struct {
		uid        int
		kind, want string
	}{
		{nobody, "socks,http,socks", "reply=0x02 status=403 reply=0x02"},
		{0, "socks,http", "reply=0x00 status=200"},
	} {
		if got := run(tc.uid, tc.kind, addr); got != tc.want {
			t.Errorf("%s client as uid %d: %q, want %q", tc.kind, tc.uid, got, tc.want)
		}
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2 (root's)", n)
	}
	refusals := 0
	for len(sink) > 0 {
		if m := <-sink; strings.HasPrefix(fmt.Sprint(m["message"]), "socks client of another local user") {
			refusals++
			if m["uid"] != fmt.Sprint(nobody) {
				t.Errorf("refusal line %v, want uid %d", m, nobody)
			}
		}
	}
	if refusals != 1 {
		t.Errorf("%d refusal lines for 3 refusals of one user, want 1", refusals)
	}

	// --allow-local-users: no Admit.
	open := serve(t, &Server{Dial: dial, Log: log})
	if got := run(nobody, "socks", open); got != "reply=0x00" {
		t.Errorf("every local user allowed: nobody got %q", got)
	}
}

// helperBinary copies this test binary where uid 65534 may run it (the
// build directory is root's alone).
func helperBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "socks-client-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(dir, "client")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

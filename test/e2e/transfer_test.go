//go:build linux

package e2e

// Bulk data through the tunnel, checked by SHA-256, and half-close: a sender
// that shuts down its write side must still get the peer's answer.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const bulkSize = 16 << 20

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func randName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func mibps(n int, d time.Duration) string {
	return fmt.Sprintf("%.1f MiB/s", float64(n)/(1<<20)/d.Seconds())
}

// TestSSHUpload16MiB is `cat f | ssh … 'cat > /tmp/…'` then a remote
// sha256sum. It also covers half-close: the upload must end and be complete.
func TestSSHUpload16MiB(t *testing.T) {
	e := getEnv(t)
	data := randomBytes(t, bulkSize)
	local := filepath.Join(t.TempDir(), "up.bin")
	if err := os.WriteFile(local, data, 0o600); err != nil {
		t.Fatal(err)
	}
	remote := randName("/tmp/tunnel-e2e-up-")
	t.Cleanup(func() { os.Remove(remote) })

	f, err := os.Open(local)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := e.sshd.ssh(3*time.Minute, nil, f, e.ncProxy(), e.host(), "cat > "+remote)
	if r.Code != 0 {
		t.Fatalf("upload: %s", r)
	}
	t.Logf("uploaded %d bytes in %s (%s)", bulkSize, r.Elapsed.Round(time.Millisecond), mibps(bulkSize, r.Elapsed))

	r = e.sshd.ssh(time.Minute, nil, nil, e.ncProxy(), e.host(), "stat -c %s "+remote+" && sha256sum "+remote)
	if r.Code != 0 {
		t.Fatalf("remote sha256sum: %s", r)
	}
	out := strings.Fields(string(r.Stdout))
	if len(out) < 2 {
		t.Fatalf("remote sha256sum: odd output %s", r)
	}
	if out[0] != fmt.Sprint(bulkSize) || out[1] != sha(data) {
		t.Fatalf("upload corrupted: remote size %s sha256 %s, want %d %s", out[0], out[1], bulkSize, sha(data))
	}
}

// TestSSHDownload16MiB is `ssh … 'cat file'` compared by SHA-256.
func TestSSHDownload16MiB(t *testing.T) {
	e := getEnv(t)
	data := randomBytes(t, bulkSize)
	remote := randName("/tmp/tunnel-e2e-down-")
	if err := os.WriteFile(remote, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(remote) })

	r := e.sshd.ssh(3*time.Minute, nil, nil, e.ncProxy(), e.host(), "cat "+remote)
	if r.Code != 0 {
		t.Fatalf("download: %s", r)
	}
	if len(r.Stdout) != bulkSize || sha(r.Stdout) != sha(data) {
		t.Fatalf("download corrupted: got %d bytes sha256 %s, want %d %s", len(r.Stdout), sha(r.Stdout), bulkSize, sha(data))
	}
	t.Logf("downloaded %d bytes in %s (%s)", bulkSize, r.Elapsed.Round(time.Millisecond), mibps(bulkSize, r.Elapsed))
}

// TestHalfCloseRaw sends N bytes to a published server that reads to EOF and
// then answers with the count: the answer only comes if our CloseWrite
// reached it while the other direction stayed open.
func TestHalfCloseRaw(t *testing.T) {
	e := getEnv(t)
	for _, n := range []int{0, 1, 65536, 4<<20 + 123} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			rep, err := socksConnect(e.socksAddr, e.host(), 7000)
			if err != nil || rep.Code != repSucceeded {
				t.Fatalf("CONNECT %s:7000: %v %s", e.host(), err, replyName(rep.Code))
			}
			c := rep.Conn.(*net.TCPConn)
			defer c.Close()
			_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
			if _, err := io.CopyN(c, rand.Reader, int64(n)); err != nil {
				t.Fatalf("write: %v", err)
			}
			if err := c.CloseWrite(); err != nil {
				t.Fatalf("CloseWrite: %v", err)
			}
			got, err := readAllTimeout(c, 30*time.Second)
			if err != nil {
				t.Fatalf("reading the answer after CloseWrite: %v (got %q)", err, got)
			}
			if want := fmt.Sprintf("%d\n", n); string(got) != want {
				t.Fatalf("server counted %q, want %q", got, want)
			}
		})
	}
}

// TestEchoRaw streams 8 MiB both ways at once through a published echo
// server and compares.
func TestEchoRaw(t *testing.T) {
	e := getEnv(t)
	rep, err := socksConnect(e.socksAddr, e.host(), 7001)
	if err != nil || rep.Code != repSucceeded {
		t.Fatalf("CONNECT %s:7001: %v %s", e.host(), err, replyName(rep.Code))
	}
	c := rep.Conn.(*net.TCPConn)
	defer c.Close()
	data := randomBytes(t, 8<<20)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(time.Minute))
		_, err := io.Copy(c, bytes.NewReader(data))
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := readAllTimeout(c, time.Minute)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if err := <-werr; err != nil {
		t.Fatalf("write: %v", err)
	}
	if len(got) != len(data) || sha(got) != sha(data) {
		t.Fatalf("echo corrupted: got %d bytes sha256 %s, want %d %s", len(got), sha(got), len(data), sha(data))
	}
	t.Logf("echoed %d bytes in %s", len(data), time.Since(start).Round(time.Millisecond))
}

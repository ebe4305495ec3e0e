package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/tunnel-dev/tunnel/socks"
)

// runTunnel runs the command line with home and stdin; it returns stderr.
func runTunnel(ctx context.Context, home, stdin string, args ...string) (string, error) {
	var errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter, app.Reader = io.Discard, &errOut, strings.NewReader(stdin)
	err := app.RunContext(ctx, append([]string{"tunnel", "--home", home, "--log-level", "error"}, args...))
	return errOut.String(), err
}

// passwordFile writes a password file for alice:right and returns it.
func passwordFile(t *testing.T) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), socks.PasswordFileName)
	if _, err := runTunnel(context.Background(), t.TempDir(), "right\n", "socksd", "passwd", "--cost", "4", "--auth", file, "alice"); err != nil {
		t.Fatal(err)
	}
	return file
}

// Bad flags and bad password files exit 2 and start nothing: no key is
// created.
func TestSocksdUsageErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	good := passwordFile(t)
	dir := t.TempDir()
	open := filepath.Join(dir, "open.auth")
	data, _ := os.ReadFile(good)
	os.WriteFile(open, data, 0o644)
	plain := filepath.Join(dir, "plain.auth")
	os.WriteFile(plain, []byte("alice:secret\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"non-loopback listen without --auth", []string{"--listen", "0.0.0.0:0"}, "--auth FILE"},
		{"all interfaces without --auth", []string{"--listen", ":0"}, "not loopback"},
		{"missing password file", []string{"--auth", filepath.Join(dir, "nope")}, "no such file"},
		{"password file others may read", []string{"--listen", "0.0.0.0:0", "--auth", open}, "chmod 600 " + open},
		{"plain password in the file", []string{"--auth", plain}, "line 1"},
		{"fallback direct beyond loopback", []string{"--listen", "0.0.0.0:0", "--auth", good, "--fallback", "direct"}, "open proxy"},
		{"bad fallback", []string{"--fallback", "sideways"}, "--fallback"},
		{"bad allow-local-users", []string{"--allow-local-users=maybe"}, "allow-local-users"},
		{"an argument", []string{"extra"}, "no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			_, err := runTunnel(context.Background(), home, "", append([]string{"socksd", "--relay-listen", "127.0.0.1:0"}, tc.args...)...)
			if !isUsageError(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("socksd %q: %v; want a usage error (exit 2) saying %q", tc.args, err, tc.want)
			}
			if _, serr := os.Stat(filepath.Join(home, "node.key")); serr == nil {
				t.Fatal("a usage error still created the node key")
			}
		})
	}
}

// passwd writes a 0600 file in the home that a second run updates,
// keeping the other users; bad input exits 2 and writes nothing.
func TestSocksdPasswd(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	home := filepath.Join(t.TempDir(), "home") // created by passwd
	file := filepath.Join(home, socks.PasswordFileName)
	passwd := func(stdin string, args ...string) (string, error) {
		return runTunnel(context.Background(), home, stdin, append([]string{"socksd", "passwd", "--cost", "4"}, args...)...)
	}
	out, err := passwd("first\n", "alice")
	if err != nil || !strings.Contains(out, "added alice") {
		t.Fatalf("first passwd: %q, %v", out, err)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v; want mode 0600", file, fi, err)
	}
	if _, err := passwd("bobs password", "bob"); err != nil { // no newline: a script's last line
		t.Fatal(err)
	}
	before, _ := os.ReadFile(file)
	out, err = passwd("second\r\n", "alice")
	if err != nil || !strings.Contains(out, "changed the password of alice") {
		t.Fatalf("second passwd: %q, %v", out, err)
	}
	after, _ := os.ReadFile(file)
	bobLine := before[bytes.Index(before, []byte("\nbob:"))+1:]
	if bytes.Equal(before, after) || !bytes.Contains(after, bobLine) {
		t.Fatalf("file before:\n%s\nafter:\n%s\nwant alice's entry changed and bob's kept", before, after)
	}
	pw, err := socks.LoadPasswords(file)
	if err != nil || pw.Users() != 2 {
		t.Fatalf("the written file: %v users, %v", pw, err)
	}
	a := socks.NewAuthenticator(pw, socks.AuthLimits{}, zerolog.Nop())
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	for user, p := range map[string]string{"alice": "second", "bob": "bobs password"} {
		if err := a.Check(context.Background(), src, user, p); err != nil {
			t.Errorf("%s's password: %v", user, err)
		}
	}

	for _, tc := range []struct {
		name, stdin string
		args        []string
	}{
		{"no user", "pw\n", nil},
		{"two users", "pw\n", []string{"alice", "bob"}},
		{"colon in the name", "pw\n", []string{"a:b"}},
		{"control character in the name", "pw\n", []string{"a\tb"}},
		{"no password", "", []string{"carol"}},
		{"empty password", "\n", []string{"carol"}},
		{"password too long", strings.Repeat("p", 73) + "\n", []string{"carol"}},
		{"cost too low", "pw\n", []string{"--cost", "3", "carol"}},
		{"cost too high", "pw\n", []string{"--cost", "15", "carol"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := passwd(tc.stdin, tc.args...); !isUsageError(err) {
				t.Fatalf("passwd %q: %v, want a usage error (exit 2)", tc.args, err)
			}
			if now, _ := os.ReadFile(file); !bytes.Equal(now, after) {
				t.Fatal("a usage error changed the file")
			}
		})
	}

	// A file it cannot parse is left alone: a plain error, nothing written.
	os.WriteFile(file, []byte("alice:secret\n"), 0o600)
	if _, err := passwd("pw\n", "carol"); err == nil || isUsageError(err) || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("over a bad file: %v", err)
	}
	if now, _ := os.ReadFile(file); string(now) != "alice:secret\n" {
		t.Fatalf("a bad file was changed: %q", now)
	}
}

// socksd with --auth asks SOCKS clients for a password, lets the right one
// through to its rules (example.com: 0x02), and stops when cancelled.
func TestSocksdAuthRuns(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	file := passwordFile(t)
	addr := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := runTunnel(ctx, t.TempDir(), "", "socksd", "--listen", addr, "--relay-listen", "127.0.0.1:0", "--auth", file)
		done <- err
	}()
	waitListening(t, addr)

	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if _, err := socks.Dial(sctx, addr, "example.com", 80); !errors.Is(err, socks.ErrNoAcceptableMethod) {
		t.Errorf("no password: %v, want ErrNoAcceptableMethod", err)
	}
	if _, err := socks.DialAuth(sctx, addr, &socks.Auth{User: "alice", Password: "wrong"}, "example.com", 80); !errors.Is(err, socks.ErrAuthFailed) {
		t.Errorf("wrong password: %v, want ErrAuthFailed", err)
	}
	_, err := socks.DialAuth(sctx, addr, &socks.Auth{User: "alice", Password: "right"}, "example.com", 80)
	if re, ok := errors.AsType[*socks.ReplyError](err); !ok || re.Code != socks.ReplyNotAllowed {
		t.Errorf("right password, example.com: %v, want reply 0x02", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("socksd: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("socksd did not stop")
	}
}

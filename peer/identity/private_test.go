package identity

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestKeyFileModes: a key file whose mode grants group or others anything
// is refused by Load and LoadOrCreate, with an error naming the file, its
// mode and the command that fixes it, and is left as it was; the owner's
// modes are accepted.
func TestKeyFileModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes on Windows")
	}
	for _, name := range []string{KeyFile, "gateway.key"} {
		for _, mode := range []os.FileMode{0o600, 0o400, 0o640, 0o644, 0o604, 0o660, 0o620, 0o602, 0o610, 0o601} {
			t.Run(fmt.Sprintf("%s/%04o", name, mode), func(t *testing.T) {
				dir := t.TempDir()
				k, err := LoadOrCreateFile(dir, name)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(dir, name)
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
				before, _ := os.ReadFile(path)
				loaded, err := LoadOrCreateFile(dir, name)
				if mode&0o077 == 0 {
					if err != nil || loaded.ID() != k.ID() {
						t.Fatalf("mode %04o: %v, want the key loaded", mode, err)
					}
					return
				}
				if err == nil {
					t.Fatalf("mode %04o accepted", mode)
				}
				if !errors.Is(err, ErrExposed) {
					t.Errorf("error %q does not wrap ErrExposed", err)
				}
				for _, want := range []string{path, fmt.Sprintf("%04o", mode), "chmod 600 " + path} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("error %q does not say %q", err, want)
					}
				}
				if name == KeyFile {
					if _, err := Load(dir); !errors.Is(err, ErrExposed) {
						t.Errorf("Load: %v, want ErrExposed", err)
					}
				}
				after, _ := os.ReadFile(path)
				st, _ := os.Stat(path)
				if string(after) != string(before) || st.Mode().Perm() != mode {
					t.Errorf("the refused key file was changed: mode %v", st.Mode().Perm())
				}
				t.Log(err)
			})
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/home/pi/.config/tunnel/node.key": "/home/pi/.config/tunnel/node.key",
		"/tmp/my home/node.key":            "'/tmp/my home/node.key'",
		"/tmp/it's/node.key":               `'/tmp/it'\''s/node.key'`,
		"-h/node.key":                      "./-h/node.key",
		"/tmp/$HOME/node.key":              "'/tmp/$HOME/node.key'",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestLoadOrCreateFileSeparate: a second key file in a home is a second
// identity, and leaves node.key alone.
func TestLoadOrCreateFileSeparate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	node, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := LoadOrCreateFile(dir, "gateway.key")
	if err != nil {
		t.Fatal(err)
	}
	if gw.ID() == node.ID() {
		t.Fatal("gateway.key has node.key's identity")
	}
	for _, name := range []string{KeyFile, "gateway.key"} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", name, st, err)
		}
	}
	st, _ := os.Stat(dir)
	if st.Mode().Perm() != 0o700 {
		t.Errorf("home mode %v, want 0700", st.Mode().Perm())
	}
	again, err := LoadOrCreateFile(dir, "gateway.key")
	if err != nil || again.ID() != gw.ID() {
		t.Fatalf("gateway.key reloaded: %v, %v", again, err)
	}
	if k, _ := Load(dir); k.ID() != node.ID() {
		t.Fatal("node.key changed")
	}
}

// The modes Go reports on Windows (0666, or 0444 read-only) refuse no key
// there, since they say nothing about who may read it; elsewhere they are
// exposed.
func TestModeExposes(t *testing.T) {
	for _, c := range []struct {
		goos string
		mode os.FileMode
		want bool
	}{
		{"windows", 0o666, false}, {"windows", 0o444, false},
		{"linux", 0o666, true}, {"linux", 0o444, true}, {"linux", 0o640, true}, {"linux", 0o601, true},
		{"linux", 0o600, false}, {"linux", 0o400, false},
		{"darwin", 0o644, true}, {"darwin", 0o600, false},
	} {
		if got := ModeExposes(c.goos, c.mode); got != c.want {
			t.Errorf("ModeExposes(%q, %04o) = %v, want %v", c.goos, c.mode, got, c.want)
		}
	}
}

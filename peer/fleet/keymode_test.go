package fleet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// TestLoadKeyModes: a fleet key file whose mode grants group or others
// anything is refused, with an error naming the file, its mode and the
// command that fixes it; the owner's modes are accepted.
func TestLoadKeyModes(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes on Windows")
	}
	for _, mode := range []os.FileMode{0o600, 0o400, 0o640, 0o644, 0o604, 0o660, 0o602} {
		t.Run(fmt.Sprintf("%04o", mode), func(t *testing.T) {
			home := t.TempDir()
			k, err := Create(home)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(home, KeyFile)
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			loaded, err := LoadKey(home)
			if mode&0o077 == 0 {
				if err != nil || loaded.ID() != k.ID() {
					t.Fatalf("mode %04o: %v, want the key loaded", mode, err)
				}
				return
			}
			if !errors.Is(err, identity.ErrExposed) {
				t.Fatalf("mode %04o: %v, want a refusal wrapping identity.ErrExposed", mode, err)
			}
			for _, want := range []string{path, fmt.Sprintf("%04o", mode), "chmod 600 " + path} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			t.Log(err)
		})
	}
}

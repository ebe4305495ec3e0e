package main

import (
	"path/filepath"
	"runtime"
	"testing"
)

// The default home is "tunnel" in the system's per-user config directory:
// on Linux ~/.config/tunnel, or $XDG_CONFIG_HOME/tunnel when that is set
// (as it always was); ~/Library/Application Support/tunnel on macOS;
// %AppData%\tunnel on Windows. Only the running system's case can run.
func TestDefaultHome(t *testing.T) {
	dir := t.TempDir()
	var want string
	switch runtime.GOOS {
	case "linux":
		t.Setenv("XDG_CONFIG_HOME", dir)
		if got := defaultHome(); got != filepath.Join(dir, "tunnel") {
			t.Errorf("with XDG_CONFIG_HOME: %s", got)
		}
		t.Setenv("XDG_CONFIG_HOME", "")
		t.Setenv("HOME", dir)
		want = filepath.Join(dir, ".config", "tunnel")
	case "darwin":
		t.Setenv("HOME", dir)
		want = filepath.Join(dir, "Library", "Application Support", "tunnel")
	case "windows":
		t.Setenv("AppData", dir)
		want = filepath.Join(dir, "tunnel")
	default:
		t.Skipf("no expectation written for %s", runtime.GOOS)
	}
	if got := defaultHome(); got != want {
		t.Errorf("defaultHome() = %s, want %s", got, want)
	}
}

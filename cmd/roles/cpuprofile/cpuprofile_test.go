//go:build unix

package cpuprofile

import (
	"bytes"
	"os"
	"syscall"
	"testing"
	"time"
)

// waitFile waits for path to exist and returns what it holds.
func waitFile(t *testing.T, path string) []byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written: %v", path, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSignalsWriteWholeProfiles(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, dir)
	stop := FromEnv()
	defer stop()
	for n := 1; n <= 2; n++ {
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
			t.Fatal(err)
		}
		// A second start while one runs is ignored, not an error.
		_ = syscall.Kill(os.Getpid(), syscall.SIGUSR1)
		time.Sleep(50 * time.Millisecond)
		if err := syscall.Kill(os.Getpid(), syscall.SIGUSR2); err != nil {
			t.Fatal(err)
		}
		b := waitFile(t, Path(dir, os.Getpid(), n))
		if !bytes.HasPrefix(b, []byte{0x1f, 0x8b}) {
			t.Fatalf("profile %d is not gzipped pprof: % x", n, b[:min(len(b), 8)])
		}
	}
	if _, err := os.Stat(Path(dir, os.Getpid(), 3)); err == nil {
		t.Fatal("a third profile appeared without a third SIGUSR1")
	}
}

// A profile left running is written out when profiling stops.
func TestStopWritesRunningProfile(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, dir)
	stop := FromEnv()
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFile(t, (&profiler{dir: dir}).tmpName()) // the profile is running
	stop()
	waitFile(t, Path(dir, os.Getpid(), 1))
}

func TestOffWithoutDirectory(t *testing.T) {
	t.Setenv(EnvDir, "")
	FromEnv()() // nothing to stop; must not block
	t.Setenv(EnvDir, t.TempDir()+"/missing")
	FromEnv()()
}

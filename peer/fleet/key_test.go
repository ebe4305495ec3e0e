package fleet

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestCreateLoadKey(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	_, err := LoadKey(home)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "tunnel fleet create") {
		t.Fatalf("LoadKey before Create: %v, want fs.ErrNotExist and a hint", err)
	}
	k, err := Create(home)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(home, KeyFile)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("fleet key mode %v, want 0600", st.Mode().Perm())
	}
	loaded, err := LoadKey(home)
	if err != nil {
		t.Fatal(err)
	}
	if loaded.ID() != k.ID() {
		t.Fatalf("LoadKey = %s, Create made %s", loaded.ID(), k.ID())
	}

	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(home); err == nil {
		t.Fatal("second Create succeeded")
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("second Create changed the fleet key")
	}
	if entries, _ := os.ReadDir(home); len(entries) != 1 {
		t.Errorf("home holds %d files after a refused Create, want 1", len(entries))
	}
}

func TestCreateConcurrent(t *testing.T) {
	home := t.TempDir()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = Create(home) })
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		}
	}
	if won != 1 {
		t.Fatalf("%d concurrent Creates succeeded, want 1: %v", won, errs)
	}
}

func TestLoadKeyRejectsGarbage(t *testing.T) {
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, KeyFile), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadKey(home)
	if err == nil || !strings.Contains(err.Error(), KeyFile) {
		t.Fatalf("LoadKey(garbage) = %v, want an error naming the file", err)
	}
}

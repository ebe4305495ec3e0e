package main

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
)

func TestParseByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1048576": 1 << 20, "12B": 12, "512KiB": 512 << 10, "32MiB": 32 << 20, "1GiB": 1 << 30, "2TiB": 2 << 40,
	} {
		if got, err := parseByteSize(in); err != nil || got != want {
			t.Errorf("parseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "32MB", "32 MiB", "-1MiB", "1.5GiB", "32mib", "0x10", "99999999999TiB"} {
		if got, err := parseByteSize(in); err == nil {
			t.Errorf("parseByteSize(%q) = %d; want an error", in, got)
		}
	}
}

// A good --memory-limit sets the runtime's limit; off leaves it alone.
func TestMemoryLimitApplied(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	run := func(args ...string) error {
		app := &cli.App{Flags: []cli.Flag{memoryLimitFlag()}, Action: applyMemoryLimit, Writer: io.Discard, ErrWriter: io.Discard}
		return app.Run(append([]string{"x"}, args...))
	}
	if err := run("--memory-limit", "48MiB"); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 48<<20 {
		t.Fatalf("limit %d after --memory-limit 48MiB; want %d", got, 48<<20)
	}
	debug.SetMemoryLimit(math.MaxInt64)
	if err := run("--memory-limit", "off"); err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("limit %d after --memory-limit off; want none", got)
	}
}

// Every role refuses a bad --memory-limit as a usage error (exit 2)
// before anything starts: no key made, the limit unchanged.
func TestMemoryLimitRefused(t *testing.T) {
	prev := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(prev)
	for _, role := range [][]string{
		{"relay", "--listen", "127.0.0.1:0"},
		{"publish", "--relay", "127.0.0.1:1", "-public", "22"},
		{"socksd", "--listen", "127.0.0.1:0", "--relay", "127.0.0.1:1"},
	} {
		for _, bad := range []string{"32MB", "lots", "-5MiB", "1MiB", "7340032"} {
			t.Run(role[0]+" "+bad, func(t *testing.T) {
				home := t.TempDir()
				app := newApp()
				app.Writer, app.ErrWriter = io.Discard, io.Discard
				args := append([]string{"tunnel", "--home", home, "--log-level", "error"}, role...)
				err := app.RunContext(context.Background(), append(args, "--memory-limit", bad))
				if _, ok := errors.AsType[usageError](err); !ok {
					t.Fatalf("%v --memory-limit %s: %v; want a usage error (exit 2)", role, bad, err)
				}
				if entries, _ := os.ReadDir(home); len(entries) != 0 {
					t.Fatalf("a usage error left %d files in the home", len(entries))
				}
				if got := debug.SetMemoryLimit(-1); got != prev {
					t.Fatalf("a refused --memory-limit changed the limit to %d", got)
				}
			})
		}
	}
}

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Bad limits on publish exit 2 before anything starts: no key, nothing
// sent.
func TestPublishLimitUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"--max-clients", "0"},
		{"--max-unauthorized", "-3"},
		{"--max-unauthorized-per-key", "x"},
		{"--max-unauthorized-streams", "0"},
	} {
		home := t.TempDir()
		app := newApp()
		app.Writer, app.ErrWriter = io.Discard, io.Discard
		all := append([]string{"tunnel", "--home", home, "--log-level", "error", "publish", "--relay", "127.0.0.1:9", "-public", "22"}, args...)
		err := app.RunContext(context.Background(), all)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("publish %q: %v; want a usage error (exit 2)", args, err)
		}
		if _, serr := os.Stat(filepath.Join(home, "node.key")); serr == nil {
			t.Errorf("publish %q: a usage error still created the node key", args)
		}
	}
}

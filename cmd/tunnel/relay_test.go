package main

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRelayRegistryUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"redis without advertise", []string{"--registry", "redis://127.0.0.1:6379/0"}},
		{"unknown registry", []string{"--registry", "etcd://127.0.0.1:2379", "--advertise", "127.0.0.1:7443"}},
		{"bad redis url", []string{"--registry", "redis://127.0.0.1:6379/notadb", "--advertise", "127.0.0.1:7443"}},
		{"advertise without registry", []string{"--advertise", "127.0.0.1:7443"}},
		{"bad advertise", []string{"--registry", "redis://127.0.0.1:6379/0", "--advertise", "nowhere"}},
		{"bad redis url with a password", []string{"--registry", "redis://u:Pa55w0rd@127.0.0.1:bad/0", "--advertise", "127.0.0.1:7443"}},
		{"ca without tls", []string{"--registry", "redis://u:Pa55w0rd@127.0.0.1:6379/0", "--registry-ca", "/nonexistent", "--advertise", "127.0.0.1:7443"}},
		{"ca without registry", []string{"--registry-ca", "/nonexistent"}},
		{"missing ca", []string{"--registry", "rediss://u:Pa55w0rd@127.0.0.1:6379/0", "--registry-ca", "/nonexistent", "--advertise", "127.0.0.1:7443"}},
		{"max-conns 0", []string{"--max-conns", "0"}},
		{"max-conns-per-source -1", []string{"--max-conns-per-source", "-1"}},
		{"max-streams-per-conn junk", []string{"--max-streams-per-conn", "lots"}},
		{"handshake-rate 0", []string{"--handshake-rate", "0"}},
		{"lookup-rate -5", []string{"--lookup-rate", "-5"}},
		{"lookup-rate inf", []string{"--lookup-rate", "Inf"}},
		{"max-registrations 0", []string{"--max-registrations", "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			app := newApp()
			app.Writer, app.ErrWriter = io.Discard, io.Discard
			args := append([]string{"tunnel", "--home", home, "--log-level", "error", "relay", "--listen", "127.0.0.1:0"}, tc.args...)
			err := app.RunContext(context.Background(), args)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("relay %q: %v; want a usage error (exit 2)", tc.args, err)
			}
			if strings.Contains(err.Error(), "55w0") {
				t.Fatalf("relay %q: %v: the error holds the password", tc.args, err)
			}
			if _, serr := os.Stat(filepath.Join(home, "node.key")); serr == nil {
				t.Fatal("a usage error still created the node key")
			}
		})
	}
}

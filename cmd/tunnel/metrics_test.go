package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Every role refuses a --metrics address beyond loopback without
// --metrics-allow-remote, as a usage error (exit 2), before anything
// starts: no key made, the port left free.
func TestMetricsRemoteRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	remote := ln.Addr().String()
	ln.Close()
	for _, role := range [][]string{
		{"relay", "--listen", "127.0.0.1:0"},
		{"publish", "--relay", "127.0.0.1:1", "-public", "22"},
		{"socksd", "--listen", "127.0.0.1:0", "--relay", "127.0.0.1:1"},
		{"gateway", "--relay", "127.0.0.1:1", "--socks", "127.0.0.1:0"},
	} {
		for _, bad := range []string{remote, "192.0.2.1:9464", ":9464", "127.0.0.1"} {
			t.Run(role[0]+" "+bad, func(t *testing.T) {
				home := t.TempDir()
				app := newApp()
				app.Writer, app.ErrWriter = io.Discard, io.Discard
				args := append([]string{"tunnel", "--home", home, "--log-level", "error"}, role...)
				err := app.RunContext(context.Background(), append(args, "--metrics", bad))
				if _, ok := errors.AsType[usageError](err); !ok {
					t.Fatalf("%v --metrics %s: %v; want a usage error (exit 2)", role, bad, err)
				}
				if entries, _ := os.ReadDir(home); len(entries) != 0 {
					t.Fatalf("a usage error left %d files in the home (%s…)", len(entries), filepath.Join(home, entries[0].Name()))
				}
			})
		}
	}
	ln, err = net.Listen("tcp", remote)
	if err != nil {
		t.Fatalf("the refused address's port was taken: %v", err)
	}
	ln.Close()
}

package main

import (
	"context"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/cmd/roles/procs"
)

// publish and socksd refuse a bad --procs as a usage error (exit 2)
// before anything starts: no key made, the runtime untouched. relay has
// no --procs.
func TestProcsRefused(t *testing.T) {
	runtime.SetDefaultGOMAXPROCS()
	defer runtime.SetDefaultGOMAXPROCS()
	before := runtime.GOMAXPROCS(0)
	for _, role := range [][]string{
		{"publish", "--relay", "127.0.0.1:1", "-public", "22"},
		{"socksd", "--listen", "127.0.0.1:0", "--relay", "127.0.0.1:1"},
		{"relay", "--listen", "127.0.0.1:0"},
	} {
		bads := []string{"0", "-2", "1.5", "many", "Auto"}
		if role[0] == "relay" {
			bads = []string{"auto", "1"}
		}
		for _, bad := range bads {
			t.Run(role[0]+" "+bad, func(t *testing.T) {
				home := t.TempDir()
				app := newApp()
				var stderr strings.Builder
				app.Writer, app.ErrWriter = io.Discard, &stderr
				args := append([]string{"tunnel", "--home", home, "--log-level", "error"}, role...)
				err := app.RunContext(context.Background(), append(args, "--procs", bad))
				if _, ok := errors.AsType[usageError](err); !ok && role[0] != "relay" {
					t.Fatalf("%v --procs %s: %v; want a usage error (exit 2)", role, bad, err)
				}
				if err == nil {
					t.Fatalf("%v --procs %s: no error", role, bad)
				}
				if entries, _ := os.ReadDir(home); len(entries) != 0 {
					t.Fatalf("a refused --procs left %d files in the home", len(entries))
				}
				if got := runtime.GOMAXPROCS(0); got != before {
					t.Fatalf("a refused --procs changed GOMAXPROCS to %d", got)
				}
			})
		}
	}
}

// --procs reads from the flag, the environment and a config file, in
// that order of precedence, and the default is auto.
func TestProcsSetting(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		file string
		args []string
		want procs.Setting
	}{
		{want: procs.Auto},
		{args: []string{"--procs", "2"}, want: 2},
		{file: "procs: 1\n", want: 1},
		{file: "procs: 1\n", env: map[string]string{"TUNNEL_PROCS": "3"}, want: 3},
		{file: "procs: 1\n", env: map[string]string{"TUNNEL_PROCS": "3"}, args: []string{"--procs", "auto"}, want: procs.Auto},
	} {
		args := tc.args
		if tc.file != "" {
			args = append(args, "--config", writeYAML(t, tc.file))
		}
		c, _, err := loadWith(t, "socksd", tc.env, args...)
		if err != nil {
			t.Fatalf("%+v: %v", tc, err)
		}
		got, ok, err := procsSetting(c)
		if err != nil || !ok || got != tc.want {
			t.Fatalf("%+v: procsSetting = %d, %v, %v; want %d", tc, got, ok, err, tc.want)
		}
	}
}

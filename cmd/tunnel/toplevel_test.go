package main

import (
	"strings"
	"testing"
)

// What a user types when no command matches: help is help (exit 0), and a
// mistyped command is a usage error naming the commands (exit 2).
func TestTopLevel(t *testing.T) {
	for _, c := range []struct {
		args      []string
		usage     bool   // want a usage error
		want      string // in stdout, or in the error
		forbidden string // never in stdout
	}{
		{args: nil, want: "COMMANDS:"},
		{args: []string{"help"}, want: "COMMANDS:"},
		{args: []string{"help", "publish"}, want: "tunnel publish - ", forbidden: "COMMANDS:"},
		{args: []string{"help", "nosuch"}, usage: true, want: `no command "nosuch": want id, relay, publish`},
		{args: []string{"help", "publish", "socksd"}, usage: true, want: "one command at most"},
		{args: []string{"nosuch"}, usage: true, want: `unknown command "nosuch": want id, relay, publish`},
		{args: []string{"publsh", "-public", "22"}, usage: true, want: `unknown command "publsh"`},
	} {
		out, _, err := runFleet(t, t.TempDir(), "", c.args...)
		label := "tunnel " + strings.Join(c.args, " ")
		switch {
		case c.usage && !isUsageError(err):
			t.Errorf("%s: %v, want a usage error", label, err)
		case c.usage && !strings.Contains(err.Error(), c.want):
			t.Errorf("%s: %v, want it to say %q", label, err, c.want)
		case !c.usage && err != nil:
			t.Errorf("%s: %v", label, err)
		case !c.usage && !strings.Contains(out, c.want):
			t.Errorf("%s printed %q, want %q in it", label, out, c.want)
		case c.forbidden != "" && strings.Contains(out, c.forbidden):
			t.Errorf("%s printed %q, which should not hold %q", label, out, c.forbidden)
		}
		if c.usage && exitCode(err) != 2 {
			t.Errorf("%s: exit status %d, want 2", label, exitCode(err))
		}
	}
}

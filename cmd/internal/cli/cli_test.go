package cli

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// usage marks the errors OnUsageError saw, as a program's exit status would.
type usage struct{ error }

// testApp is a program with a global flag, a command with one flag of each
// kind, and a group of two levels.
func testApp(out *bytes.Buffer, ran *[]string, got **Context) *App {
	record := func(name string) ActionFunc {
		return func(c *Context) error {
			*ran = append(*ran, name)
			*got = c
			return nil
		}
	}
	return &App{
		Name:    "prog",
		Usage:   "does things",
		Version: "1.2.3",
		Flags: []Flag{
			&StringFlag{Name: "home", EnvVars: []string{"PROG_HOME"}, Value: "/def", Usage: "the `DIR` to use"},
		},
		Commands: []*Command{
			{
				Name:  "run",
				Usage: "run it",
				Flags: []Flag{
					&StringFlag{Name: "name", Aliases: []string{"n"}, EnvVars: []string{"PROG_NAME", "PROG_NAME2"}},
					&BoolFlag{Name: "fast"},
					&IntFlag{Name: "count", Aliases: []string{"c"}, Value: 4},
					&UintFlag{Name: "size"},
					&Float64Flag{Name: "rate", Value: 1.5},
					&DurationFlag{Name: "wait", Value: time.Second},
					&StringSliceFlag{Name: "spec"},
					&StringFlag{Name: "secret", Hidden: true},
				},
				Action: record("run"),
			},
			{Name: "quiet", Usage: "not listed", Hidden: true, Action: record("quiet")},
			{
				Name:  "group",
				Usage: "a group",
				Subcommands: []*Command{{
					Name:        "inner",
					Usage:       "inner group",
					Subcommands: []*Command{{Name: "leaf", Usage: "the leaf", Action: record("leaf")}},
				}},
			},
		},
		Action:       record("app"),
		OnUsageError: func(err error) error { return usage{err} },
		Writer:       out,
		ErrWriter:    out,
	}
}

func run(t *testing.T, args ...string) (out string, ran []string, c *Context, err error) {
	t.Helper()
	var buf bytes.Buffer
	app := testApp(&buf, &ran, &c)
	err = app.Run(append([]string{"prog"}, args...))
	return buf.String(), ran, c, err
}

func TestFlagKinds(t *testing.T) {
	_, ran, c, err := run(t, "run", "-n", "x", "--fast", "--count=7", "-size", "0x10", "--rate", "2.5",
		"--wait", "1m30s", "--spec", "a,b", "-spec", "c", "--secret", "s", "rest", "--fast")
	if err != nil || len(ran) != 1 || ran[0] != "run" {
		t.Fatalf("ran %v: %v", ran, err)
	}
	if c.String("name") != "x" || c.String("n") != "x" || !c.Bool("fast") || c.Int("count") != 7 || c.Int("c") != 7 ||
		c.Uint("size") != 16 || c.Float64("rate") != 2.5 || c.Duration("wait") != 90*time.Second ||
		c.String("secret") != "s" || c.String("home") != "/def" {
		t.Errorf("values: name %q fast %v count %d size %d rate %v wait %v secret %q home %q", c.String("name"),
			c.Bool("fast"), c.Int("count"), c.Uint("size"), c.Float64("rate"), c.Duration("wait"), c.String("secret"), c.String("home"))
	}
	// Each value kept whole, commas included; parsing stops at "rest".
	if got := c.StringSlice("spec"); fmt.Sprint(got) != "[a,b c]" {
		t.Errorf("spec = %q, want [a,b c]", got)
	}
	if got := c.Args().Slice(); fmt.Sprint(got) != "[rest --fast]" || c.NArg() != 2 || c.Args().First() != "rest" ||
		c.Args().Get(1) != "--fast" || c.Args().Get(2) != "" || fmt.Sprint(c.Args().Tail()) != "[--fast]" {
		t.Errorf("args %q", got)
	}
	if !c.IsSet("count") || !c.IsSet("c") || !c.IsSet("n") || c.IsSet("home") || c.IsSet("nosuch") {
		t.Errorf("IsSet: count %v c %v n %v home %v nosuch %v", c.IsSet("count"), c.IsSet("c"), c.IsSet("n"), c.IsSet("home"), c.IsSet("nosuch"))
	}
	// Defaults, and a flag no command has reads as its zero value.
	_, _, c, err = run(t, "run")
	if err != nil || c.Int("count") != 4 || c.Float64("rate") != 1.5 || c.Duration("wait") != time.Second ||
		c.StringSlice("spec") != nil || c.Bool("fast") || c.String("nosuch") != "" || c.IsSet("count") {
		t.Errorf("defaults: %v count %d rate %v wait %v", err, c.Int("count"), c.Float64("rate"), c.Duration("wait"))
	}
	if _, _, c, err = run(t, "run", "--fast=false", "--", "-x"); err != nil || c.Bool("fast") || !c.IsSet("fast") || c.Args().First() != "-x" {
		t.Errorf("--fast=false -- -x: %v, fast %v, args %q", err, c.Bool("fast"), c.Args())
	}
}

// The program's flags go before or after the command, and read the same.
func TestGlobalFlags(t *testing.T) {
	for _, args := range [][]string{{"--home", "/h", "run"}, {"run", "--home", "/h"}, {"-home=/h", "group", "inner", "leaf"}, {"group", "inner", "leaf", "-home", "/h"}} {
		_, _, c, err := run(t, args...)
		if err != nil || c.String("home") != "/h" || !c.IsSet("home") {
			t.Errorf("%q: %v, home %q set %v", args, err, c.String("home"), c.IsSet("home"))
		}
	}
}

// An environment variable stands for its flag unless the command line
// gives it; empty ones are ignored; bad ones are usage errors.
func TestEnv(t *testing.T) {
	t.Setenv("PROG_NAME", "")
	t.Setenv("PROG_NAME2", "env2")
	t.Setenv("PROG_HOME", "/env")
	_, _, c, err := run(t, "run")
	if err != nil || c.String("name") != "env2" || !c.IsSet("name") || c.String("home") != "/env" || !c.IsSet("home") {
		t.Errorf("from env: %v, name %q home %q", err, c.String("name"), c.String("home"))
	}
	_, _, c, err = run(t, "run", "--name", "cmd", "--home", "/cmd")
	if err != nil || c.String("name") != "cmd" || c.String("home") != "/cmd" {
		t.Errorf("command line over env: %v, name %q home %q", err, c.String("name"), c.String("home"))
	}

	app := &App{Name: "p", Flags: []Flag{&IntFlag{Name: "n", EnvVars: []string{"PROG_N"}}},
		Action: func(*Context) error { t.Error("action ran with a bad environment variable"); return nil }, Writer: &bytes.Buffer{},
		OnUsageError: func(err error) error { return usage{err} }}
	t.Setenv("PROG_N", "many")
	err = app.Run([]string{"p"})
	var u usage
	if !errors.As(err, &u) || !strings.Contains(err.Error(), `PROG_N="many"`) || !strings.Contains(err.Error(), "want a whole number") {
		t.Errorf("bad env: %v, want a usage error naming PROG_N and what it wants", err)
	}
}

// Whatever the user types is an error, help, or a run; never a panic.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--count", "x"}, "want a whole number"},
		{[]string{"run", "--size", "-1"}, "want a whole number from 0"},
		{[]string{"run", "--rate", "NaN"}, "want a number"},
		{[]string{"run", "--wait", "5"}, "want a duration"},
		{[]string{"run", "--fast=maybe"}, "fast"},
		{[]string{"run", "--nosuch"}, "nosuch"},
		{[]string{"run", "--count"}, "count"},
		{[]string{"run", "---x"}, "bad flag syntax"},
		{[]string{"run", "-=x"}, "bad flag syntax"},
		{[]string{"--name", "x", "run"}, "name"}, // a command's flag before the command
		{[]string{"group", "inner", "leaf", "--version"}, "version"},
	} {
		_, ran, _, err := run(t, tc.args...)
		var u usage
		if !errors.As(err, &u) || !strings.Contains(err.Error(), tc.want) || len(ran) != 0 {
			t.Errorf("%q: ran %v, %v; want a usage error saying %q", tc.args, ran, err, tc.want)
		}
	}
	// "-" is an argument, as the flag package has it.
	if _, ran, c, err := run(t, "run", "-"); err != nil || len(ran) != 1 || c.Args().First() != "-" {
		t.Errorf("run -: ran %v, %v", ran, err)
	}
}

func TestCommands(t *testing.T) {
	_, ran, c, err := run(t, "group", "inner", "leaf", "x")
	if err != nil || fmt.Sprint(ran) != "[leaf]" || c.Command.HelpName != "prog group inner leaf" || c.Args().First() != "x" {
		t.Fatalf("group inner leaf: ran %v, %v", ran, err)
	}
	var names []string
	for _, l := range c.Lineage() {
		names = append(names, l.Command.Name)
	}
	if fmt.Sprint(names) != "[leaf inner group prog]" {
		t.Errorf("lineage %v", names)
	}
	// No command: the program's action, with the words as arguments.
	if _, ran, c, err = run(t, "nosuch", "x"); err != nil || fmt.Sprint(ran) != "[app]" || c.Args().First() != "nosuch" {
		t.Errorf("nosuch: ran %v, %v", ran, err)
	}
	// A hidden command runs; a group without an action shows its help.
	if _, ran, _, err = run(t, "quiet"); err != nil || fmt.Sprint(ran) != "[quiet]" {
		t.Errorf("quiet: ran %v, %v", ran, err)
	}
	out, ran, _, err := run(t, "group", "inner")
	if err != nil || len(ran) != 0 || !strings.Contains(out, "prog group inner - inner group") || !strings.Contains(out, "leaf  the leaf") {
		t.Errorf("group inner: ran %v, %v, printed %q", ran, err, out)
	}
}

func TestSet(t *testing.T) {
	_, _, c, err := run(t, "run", "--spec", "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Set("count", "9"); err != nil || c.Int("count") != 9 || !c.IsSet("count") {
		t.Errorf("Set count: %v, count %d", err, c.Int("count"))
	}
	if err := c.Set("home", "/set"); err != nil || c.String("home") != "/set" || !c.IsSet("home") {
		t.Errorf("Set home: %v, home %q", err, c.String("home"))
	}
	if err := c.Set("spec", "b"); err != nil || fmt.Sprint(c.StringSlice("spec")) != "[a b]" {
		t.Errorf("Set spec: %v, spec %q", err, c.StringSlice("spec"))
	}
	if err := c.Set("count", "x"); err == nil {
		t.Error("Set count x: no error")
	}
	if err := c.Set("nosuch", "x"); err == nil {
		t.Error("Set nosuch: no error")
	}
}

// The flags' definitions are not written to: a second run starts from the
// defaults.
func TestRunTwice(t *testing.T) {
	var buf bytes.Buffer
	var ran []string
	var c *Context
	app := testApp(&buf, &ran, &c)
	if err := app.Run([]string{"prog", "run", "--count", "9", "--spec", "a"}); err != nil {
		t.Fatal(err)
	}
	if err := app.Run([]string{"prog", "run"}); err != nil || c.Int("count") != 4 || c.StringSlice("spec") != nil {
		t.Errorf("second run: %v, count %d spec %q", err, c.Int("count"), c.StringSlice("spec"))
	}
}

func TestHelp(t *testing.T) {
	out, ran, _, err := run(t, "--help")
	if err != nil || len(ran) != 0 {
		t.Fatalf("--help: ran %v, %v", ran, err)
	}
	for _, want := range []string{"prog - does things", "COMMANDS:", "run    run it", "group  a group",
		`--home DIR`, `the DIR to use (default: "/def") [$PROG_HOME]`, "--version, -v"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help printed\n%s\nwithout %q", out, want)
		}
	}
	if strings.Contains(out, "quiet") {
		t.Errorf("--help lists the hidden command:\n%s", out)
	}

	out, ran, _, err = run(t, "run", "-h", "--nosuch-after-help")
	if err == nil { // the flag package stops at the unknown flag before help is seen
		t.Errorf("run -h --nosuch-after-help: no error, ran %v", ran)
	}
	out, ran, _, err = run(t, "run", "-h")
	if err != nil || len(ran) != 0 {
		t.Fatalf("run -h: ran %v, %v", ran, err)
	}
	for _, want := range []string{"prog run - run it", "--name VALUE, -n VALUE", "[$PROG_NAME] [$PROG_NAME2]",
		"--count N, -c N", "(default: 4)", "--fast  ", "--wait DURATION", "(default: 1s)", "--rate NUMBER", "(default: 1.5)",
		"--help, -h", "--home go before or after the command (see 'prog --help')"} {
		if !strings.Contains(out, want) {
			t.Errorf("run -h printed\n%s\nwithout %q", out, want)
		}
	}
	if strings.Contains(out, "secret") {
		t.Errorf("run -h lists the hidden flag:\n%s", out)
	}

	if out, _, _, err = run(t, "--version"); err != nil || out != "prog version 1.2.3\n" {
		t.Errorf("--version: %q, %v", out, err)
	}

	var buf bytes.Buffer
	var c *Context
	app := testApp(&buf, &ran, &c)
	app.Action = func(c *Context) error { return ShowCommandHelp(c, c.Args().First()) }
	if err := app.Run([]string{"prog", "group"}); err != nil || !strings.Contains(buf.String(), "prog group - a group") {
		t.Errorf("ShowCommandHelp group: %v, printed %q", err, buf.String())
	}
	if err := app.Run([]string{"prog", "nosuch"}); err == nil {
		t.Error("ShowCommandHelp nosuch: no error")
	}
}

// A flag defined twice or badly named is the program's mistake: an error,
// not a panic. A flag may take the name of -h or -v.
func TestDefinedBadly(t *testing.T) {
	for _, flags := range [][]Flag{
		{&StringFlag{Name: "a"}, &BoolFlag{Name: "b", Aliases: []string{"a"}}},
		{&StringFlag{Name: "a=b"}},
		{&StringFlag{Name: "-a"}},
		{&StringFlag{}},
	} {
		app := &App{Name: "p", Flags: flags, Writer: &bytes.Buffer{}}
		if err := app.Run([]string{"p"}); err == nil || !strings.Contains(err.Error(), "badly named") {
			t.Errorf("flags %v: %v, want an error", flags[0].Names(), err)
		}
	}
	var got string
	app := &App{Name: "p", Version: "1", Flags: []Flag{&StringFlag{Name: "host", Aliases: []string{"h"}}, &BoolFlag{Name: "v"}},
		Action: func(c *Context) error { got = fmt.Sprint(c.String("h"), " ", c.Bool("v")); return nil }, Writer: &bytes.Buffer{}}
	if err := app.Run([]string{"p", "-h", "x", "-v"}); err != nil || got != "x true" {
		t.Errorf("-h x -v with flags h and v: %v, got %q", err, got)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		f    Flag
		v    string
		want error
	}{
		{&StringFlag{}, "", nil},
		{&StringSliceFlag{}, "x,y", nil},
		{&BoolFlag{}, "true", nil},
		{&BoolFlag{}, "yes", errWantBool},
		{&IntFlag{}, "-3", nil},
		{&IntFlag{}, "3.5", errWantInt},
		{&UintFlag{}, "-3", errWantUint},
		{&Float64Flag{}, "1e3", nil},
		{&Float64Flag{}, "fast", errWantFloat},
		{&DurationFlag{}, "10s", nil},
		{&DurationFlag{}, "10", errWantDuration},
	} {
		if err := Check(tc.f, tc.v); err != tc.want {
			t.Errorf("Check(%T, %q) = %v, want %v", tc.f, tc.v, err, tc.want)
		}
	}
}

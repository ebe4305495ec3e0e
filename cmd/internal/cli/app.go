// Package cli parses tunnel's command line: a program of commands, each
// with its own flags and, for a group, subcommands, every flag optionally
// read from environment variables; and it prints their help.
//
// It exists instead of a general command-line library because those print
// their help with text/template, whose executor looks methods up by a name
// computed at run time; that keeps the linker from dropping any exported
// method of any type in the binary, which cost every tunnel process
// 2.2 MiB of resident binary (BENCHMARKS.md, round seven). Nothing
// here uses reflection.
//
// What a caller may rely on:
//   - Flags are parsed by the standard library's flag package: -name and
//     --name are the same, a value follows as the next word or after =,
//     a bool flag takes no word (--name=false to turn it off), and parsing
//     stops at the first word that is no flag, or after "--".
//   - A flag's environment variables, the first set to a non-empty value,
//     stand for the flag when the command line does not give it; IsSet is
//     true for either.
//   - The program's own flags (App.Flags) are accepted before the command
//     and after it, and read from any command's Context.
//   - -h and --help print the help of the command they are given to and
//     run nothing; --version (-v) before any command prints the version.
//   - Every error in what the user typed (an unknown flag, a bad value,
//     a bad environment variable) goes through App.OnUsageError before it
//     is returned; nothing is printed but help and the version.
package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// ActionFunc runs a command once its flags are parsed.
type ActionFunc func(*Context) error

// App is the program: its global flags, its commands, and the action run
// when no command is named.
type App struct {
	Name        string
	Usage       string // one line
	Description string // paragraphs, shown in the help as written
	Version     string // --version prints "Name version Version"; none without it
	Flags       []Flag
	Commands    []*Command
	Action      ActionFunc

	// OnUsageError, if set, is given every error in what the user typed
	// and returns what Run returns.
	OnUsageError func(error) error

	// Standard streams of the commands; os.Stdout, os.Stderr and os.Stdin
	// when nil.
	Writer    io.Writer
	ErrWriter io.Writer
	Reader    io.Reader
}

// Command is one command, or a group of Subcommands.
type Command struct {
	Name        string
	Usage       string // one line, shown in its group's list
	UsageText   string // the synopsis; "PATH [options] [arguments...]" when empty
	Description string
	Flags       []Flag
	Subcommands []*Command
	Action      ActionFunc
	Hidden      bool // left out of its group's list

	// HelpName is the command as typed from the program on: "tunnel fleet
	// add". Run sets it.
	HelpName string
}

func findCommand(cmds []*Command, name string) *Command {
	for _, c := range cmds {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Run runs the command line args, args[0] being the program.
func (a *App) Run(args []string) error { return a.RunContext(context.Background(), args) }

// RunContext runs the command line args with ctx as every Context's
// context.
func (a *App) RunContext(ctx context.Context, args []string) error {
	if a.Writer == nil {
		a.Writer = os.Stdout
	}
	if a.ErrWriter == nil {
		a.ErrWriter = os.Stderr
	}
	if a.Reader == nil {
		a.Reader = os.Stdin
	}
	root := &Command{Name: a.Name, HelpName: a.Name, Usage: a.Usage, Description: a.Description,
		Flags: a.Flags, Subcommands: a.Commands, Action: a.Action}
	if len(args) > 0 {
		args = args[1:]
	}
	return a.run(ctx, nil, root, args)
}

func (a *App) run(ctx context.Context, parent *Context, cmd *Command, args []string) error {
	c := &Context{Context: ctx, App: a, Command: cmd, parent: parent}
	if parent == nil {
		c.root = c
	} else {
		c.root = parent.root
	}
	if done, err := c.parse(args); done || err != nil {
		return err
	}
	if rest := c.Args(); rest.Present() {
		if sub := findCommand(cmd.Subcommands, rest.First()); sub != nil {
			sub.HelpName = cmd.HelpName + " " + sub.Name
			return a.run(c.Context, c, sub, rest.Tail())
		}
	}
	if cmd.Action == nil {
		if len(cmd.Subcommands) > 0 {
			return ShowHelp(c)
		}
		return nil
	}
	return cmd.Action(c)
}

func (a *App) usageError(err error) error {
	if a.OnUsageError != nil {
		return a.OnUsageError(err)
	}
	return err
}

// parse makes c's flag set, applies the environment and parses args. done
// is true when the flags asked for help or the version, which it printed.
func (c *Context) parse(args []string) (done bool, err error) {
	cmd := c.Command
	c.fs = flag.NewFlagSet(cmd.HelpName, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard)
	c.fs.Usage = func() {}
	for _, f := range cmd.Flags {
		s := f.spec()
		if err := define(c.fs, f, s.value); err != nil {
			return false, err
		}
		if err := fromEnv(c.fs, f, s.env); err != nil {
			return false, c.App.usageError(err)
		}
	}
	if c.parent != nil {
		// The program's flags the command has no flag of its own for,
		// sharing the values the program's flag set holds, so that a
		// global flag after the command is the same as before it.
		for _, f := range c.App.Flags {
			if name := f.Names()[0]; c.fs.Lookup(name) == nil {
				if err := define(c.fs, f, c.root.fs.Lookup(name).Value); err != nil {
					return false, err
				}
			}
		}
	}
	// -h, --help and the program's -v, --version, unless a flag of the
	// command has taken the name.
	help, version := false, false
	for _, n := range []string{"help", "h"} {
		if c.fs.Lookup(n) == nil {
			c.fs.BoolVar(&help, n, false, "")
		}
	}
	if c.parent == nil && c.App.Version != "" {
		for _, n := range []string{"version", "v"} {
			if c.fs.Lookup(n) == nil {
				c.fs.BoolVar(&version, n, false, "")
			}
		}
	}
	if err := c.fs.Parse(args); err != nil {
		return false, c.App.usageError(err)
	}
	switch {
	case help:
		return true, ShowHelp(c)
	case version:
		_, err := fmt.Fprintf(c.App.Writer, "%s version %s\n", c.App.Name, c.App.Version)
		return true, err
	}
	return false, nil
}

// define adds f to fs under each of its names, holding v.
func define(fs *flag.FlagSet, f Flag, v flag.Value) error {
	for _, n := range f.Names() {
		if n == "" || strings.HasPrefix(n, "-") || strings.Contains(n, "=") || fs.Lookup(n) != nil {
			// A programming error, not the user's: say so plainly.
			return fmt.Errorf("cli: flag %q of %s defined twice or badly named", n, fs.Name())
		}
		fs.Var(v, n, "")
	}
	return nil
}

// fromEnv sets f, defined in fs, from the first of its environment
// variables envs set to a non-empty value.
func fromEnv(fs *flag.FlagSet, f Flag, envs []string) error {
	for _, env := range envs {
		v := os.Getenv(env)
		if v == "" {
			continue
		}
		if err := fs.Set(f.Names()[0], v); err != nil {
			return fmt.Errorf("environment variable %s=%q (--%s): %w", env, v, f.Names()[0], err)
		}
		return nil
	}
	return nil
}

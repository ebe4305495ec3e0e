// Command tunnel reaches TCP services on devices behind NAT by name,
// <device-id>.tunnel, through rendezvous nodes that cannot read the traffic.
// This package only parses flags and wires the other packages together.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles/cpuprofile"
)

// usageError marks errors in what the user typed: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfiling := cpuprofile.FromEnv() // off unless TUNNEL_CPU_PROFILE_DIR is set (test/bench)
	err := newApp().RunContext(ctx, os.Args)
	stopProfiling()
	stop()
	os.Exit(exitCode(err))
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(os.Stderr, "tunnel: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintln(os.Stderr, "Run 'tunnel --help' or 'tunnel COMMAND --help' for usage.")
		return 2
	}
	return 1
}

func newApp() *cli.App {
	app := &cli.App{
		Name:  "tunnel",
		Usage: "reach TCP services on devices behind NAT by name: <device-id>.tunnel",
		Description: `A device runs 'tunnel publish'; your machine runs 'tunnel socksd'; then
   ssh -o "ProxyCommand=nc -X 5 -x localhost:1080 %h %p" pi@<device-id>.tunnel
reaches the device's sshd, end-to-end encrypted between the two node keys.
A rendezvous node ('tunnel relay', or the one socksd embeds) introduces the
two and carries packets it cannot read.

Long flags take one dash or two: -public and --public are the same.`,
		HideHelpCommand: true,
		// --version (-v) prints what `tunnel version` does.
		Version: readBuildInfo().Version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "home", EnvVars: []string{"TUNNEL_HOME"}, Value: defaultHome(),
				Usage: "directory holding this node's key and state"},
			&cli.StringFlag{Name: "log-level", EnvVars: []string{"TUNNEL_LOG_LEVEL"}, Value: "info",
				Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "log-format", EnvVars: []string{"TUNNEL_LOG_FORMAT"},
				Usage: "console or json (default: console on a terminal, json otherwise)"},
		},
		Commands: []*cli.Command{
			idCommand(),
			relayCommand(),
			publishCommand(),
			socksdCommand(),
			connectCommand(),
			bindCommand(),
			sshConfigCommand(),
			knownHostsCommand(),
			pingCommand(),
			fleetCommand(),
			nameCommand(),
			statusCommand(),
			gatewayCommand(),
			versionCommand(),
		},
		// A bad flag or environment variable anywhere exits 2.
		OnUsageError: func(err error) error { return usageError{err} },
		Action:       topLevel,
	}
	return app
}

// topLevel runs when no command matched: bare `tunnel` and `tunnel help`
// show the help, `tunnel help COMMAND` that command's; any other word is a
// usage error naming the commands.
func topLevel(c *cli.Context) error {
	args := c.Args()
	if !args.Present() {
		return cli.ShowAppHelp(c)
	}
	if args.First() == "help" {
		switch args.Len() {
		case 1:
			return cli.ShowAppHelp(c)
		case 2:
			if c.App.Command(args.Get(1)) != nil {
				return cli.ShowCommandHelp(c, args.Get(1))
			}
			return usagef("no command %q: want %s", args.Get(1), orList(commandNames(c.App)))
		}
		return usagef("help takes one command at most, got %q", strings.Join(args.Tail(), " "))
	}
	return usagef("unknown command %q: want %s", args.First(), orList(commandNames(c.App)))
}

func commandNames(app *cli.App) []string {
	var names []string
	for _, c := range app.Commands {
		if !c.Hidden {
			names = append(names, c.Name)
		}
	}
	return names
}

// commandGroup makes cmd a group of its Subcommands: run bare or with
// "help", it shows their help ("help SUB": SUB's); with an unknown word, a
// usage error naming them.
func commandGroup(cmd *cli.Command) *cli.Command {
	var names []string
	for _, sub := range cmd.Subcommands {
		names = append(names, sub.Name)
	}
	cmd.HideHelpCommand = true
	cmd.Action = func(c *cli.Context) error {
		args := c.Args()
		group := strings.TrimPrefix(c.Command.HelpName, c.App.Name+" ")
		switch {
		case !args.Present() || args.First() == "help" && args.Len() == 1:
			return cli.ShowSubcommandHelp(c)
		case args.First() == "help" && args.Len() == 2 && slices.Contains(names, args.Get(1)):
			return cli.ShowCommandHelp(c, args.Get(1))
		case args.First() == "help":
			return usagef("%s help takes one of %s, got %q", group, orList(names), strings.Join(args.Tail(), " "))
		}
		return usagef("unknown %s command %q: want %s", group, args.First(), orList(names))
	}
	return cmd
}

// orList is "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func defaultHome() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ".tunnel"
	}
	return filepath.Join(dir, "tunnel")
}

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
		Action:       groupAction,
	}
	return app
}

// groupAction is the action of the program and of every group of
// commands (fleet, fleet names), run when no command of the group matched:
// bare or with "help" it shows the group's help, with "help COMMAND" that
// command's; any other word is a usage error naming the group's commands.
func groupAction(c *cli.Context) error {
	var names []string
	for _, sub := range c.Command.Subcommands {
		if !sub.Hidden {
			names = append(names, sub.Name)
		}
	}
	// "" for the program, "fleet " for `tunnel fleet`.
	group := strings.TrimPrefix(c.Command.HelpName+" ", c.App.Name+" ")
	args := c.Args()
	switch {
	case !args.Present() || args.First() == "help" && args.Len() == 1:
		return cli.ShowHelp(c)
	case args.First() != "help":
		return usagef("unknown %scommand %q: want %s", group, args.First(), orList(names))
	case args.Len() > 2:
		return usagef("help takes one command at most, got %q", strings.Join(args.Tail(), " "))
	}
	if err := cli.ShowCommandHelp(c, args.Get(1)); !errors.Is(err, cli.ErrNoCommand) {
		return err
	}
	return usagef("no %scommand %q: want %s", group, args.Get(1), orList(names))
}

// commandGroup makes cmd a group of its Subcommands (groupAction).
func commandGroup(cmd *cli.Command) *cli.Command {
	cmd.Action = groupAction
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

package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/socks"
)

func passwdCommand() *cli.Command {
	return &cli.Command{
		Name:      "passwd",
		Usage:     "add a user to socksd's password file, or change its password",
		UsageText: "tunnel socksd passwd [--auth FILE] [--cost N] USER",
		Description: `Asks for USER's password twice on the terminal (not echoed), or reads one
line from standard input when it is not a terminal (for scripts:
  printf '%s\n' "$PW" | tunnel socksd passwd alice), and writes USER's entry
in FILE: a bcrypt hash, never the password. Other entries are kept. FILE is
replaced atomically, with mode 0600; socksd reads it when it starts, so
restart socksd for a change to take effect.
USER is 1..255 bytes without ':' or control characters; passwords are 1..72
bytes (bcrypt reads no more). 'htpasswd -B FILE USER' makes the same entries.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "auth", EnvVars: []string{"TUNNEL_SOCKS_AUTH"},
				Usage: "the password `FILE` to write (default: " + socks.PasswordFileName + " in the home)"},
			&cli.IntFlag{Name: "cost", Value: 10,
				Usage: fmt.Sprintf("bcrypt cost, %d..%d: each step doubles the work of every check (10: ~60 ms of a core), as htpasswd -C", socks.MinHashCost, socks.MaxHashCost)},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("passwd takes one USER, got %d arguments", c.Args().Len())
			}
			user := c.Args().First()
			if err := socks.CheckUsername(user); err != nil {
				return usageError{err}
			}
			cost := c.Int("cost")
			if cost < socks.MinHashCost || cost > socks.MaxHashCost {
				return usagef("--cost %d: want %d..%d", cost, socks.MinHashCost, socks.MaxHashCost)
			}
			password, err := socks.ReadNewPassword(c.App.Reader, c.App.ErrWriter, user)
			if errors.Is(err, socks.ErrBadPassword) {
				return usageError{err}
			} else if err != nil {
				return err
			}
			file := c.String("auth")
			if file == "" {
				home := c.String("home")
				if err := os.MkdirAll(home, 0o700); err != nil {
					return err
				}
				file = filepath.Join(home, socks.PasswordFileName)
			}
			replaced, err := socks.SetPassword(file, user, password, cost)
			if err != nil {
				return err
			}
			verb := "added"
			if replaced {
				verb = "changed the password of"
			}
			fmt.Fprintf(c.App.ErrWriter, "%s: %s %s; restart socksd to use it (socksd --auth %s)\n", file, verb, user, file)
			return nil
		},
	}
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/term"

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
			password, err := readNewPassword(c.App.Reader, c.App.ErrWriter, user)
			if err != nil {
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

// readNewPassword asks for a password twice on a terminal, without echo,
// or reads one line from in when it is not a terminal.
func readNewPassword(in io.Reader, prompt io.Writer, user string) (string, error) {
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(prompt, "Password for %s: ", user)
		pw, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(prompt, "Again: ")
		again, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		if err != nil {
			return "", err
		}
		if string(pw) != string(again) {
			return "", usagef("the two passwords differ; nothing written")
		}
		if err := socks.CheckPassword(string(pw)); err != nil {
			return "", usageError{err}
		}
		return string(pw), nil
	}
	// One line, of a bounded length: a password is at most 72 bytes.
	line, err := bufio.NewReader(io.LimitReader(in, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("reading the password from standard input: %w", err)
	}
	pw := strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
	if err := socks.CheckPassword(pw); err != nil {
		return "", usagef("password on standard input: %v", err)
	}
	return pw, nil
}

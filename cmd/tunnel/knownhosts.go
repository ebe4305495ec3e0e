package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
)

func knownHostsCommand() *cli.Command {
	return &cli.Command{
		Name:      "known-hosts",
		Usage:     "print the SSH host keys of HOST:PORT, as the device vouches for them, in known_hosts format",
		UsageText: "tunnel known-hosts [--relay ADDR] HOST [PORT]",
		Description: `For OpenSSH's KnownHostsCommand (OpenSSH 8.5 or later), which 'tunnel
ssh-config' sets up:
   KnownHostsCommand tunnel known-hosts %H %p
The device asks the service behind PORT (default 22) for its host keys, as
ssh-keyscan would, and sends them over the end-to-end connection to the
device whose key HOST names — so ssh can check the host key with no
"authenticity can't be established" question. One line per key, "HOST
TYPE KEY" for port 22 and "[HOST]:PORT TYPE KEY" otherwise, HOST as given
(lowercased, as ssh compares host names). Reaches devices as 'tunnel
connect' does: --relay, else this home's running socksd, else
TUNNEL_RELAY. Standard output carries only those lines; a failure is one
line on standard error and a non-zero exit.`,
		Flags: []cli.Flag{
			reachRelayFlag(),
			pathFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 20 * time.Second, Usage: "give up after this long"},
		},
		Action: func(c *cli.Context) error {
			host, port, err := hostPortArgs(c, "known-hosts", true)
			if err != nil {
				return err
			}
			if host, port, err = knownHostsName(host, port, c.Args().Len() == 2); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			r, err := reachQuiet(ctx, c)
			if err != nil {
				return err
			}
			defer r.Close()
			keys, err := r.HostKeys(ctx, host, port)
			if err != nil {
				return err
			}
			var out strings.Builder
			for _, k := range keys {
				out.WriteString(knownHostsLine(host, port, k))
			}
			_, err = c.App.Writer.Write([]byte(out.String()))
			return err
		},
	}
}

// knownHostsName reads HOST as ssh gives %H: for a port other than 22 it
// asks once with the bare name and once with the known_hosts form
// "[NAME]:PORT" (OpenSSH 9 does both); the port inside wins, and must
// agree with a PORT given beside it.
func knownHostsName(host string, port uint16, portGiven bool) (string, uint16, error) {
	if !strings.HasPrefix(host, "[") {
		return host, port, nil
	}
	end := strings.LastIndex(host, "]:")
	if end < 0 {
		return "", 0, usagef("host %q: want NAME or [NAME]:PORT", host)
	}
	p, err := strconv.ParseUint(host[end+2:], 10, 16)
	if err != nil || p == 0 {
		return "", 0, usagef("host %q: port: want 1 to 65535", host)
	}
	if portGiven && uint16(p) != port {
		return "", 0, usagef("host %q names port %d, but PORT is %d", host, p, port)
	}
	return host[1:end], uint16(p), nil
}

// knownHostsLine is one known_hosts line for key of host:port, as ssh
// looks it up: the host as typed, lowercased, bracketed with the port
// unless it is 22.
func knownHostsLine(host string, port uint16, key ssh.PublicKey) string {
	name := strings.ToLower(host)
	if port != 22 {
		name = fmt.Sprintf("[%s]:%d", name, port)
	}
	return name + " " + string(ssh.MarshalAuthorizedKey(key)) // ends in '\n'
}

// hostPortArgs reads HOST and, if portOptional, an optional PORT (default
// 22); otherwise HOST only.
func hostPortArgs(c *cli.Context, cmd string, withPort bool) (string, uint16, error) {
	n := c.Args().Len()
	if n == 0 || (withPort && n > 2) || (!withPort && n > 1) {
		want := "HOST"
		if withPort {
			want = "HOST [PORT]"
		}
		return "", 0, usagef("%s needs %s, got %d arguments", cmd, want, n)
	}
	host := c.Args().Get(0)
	if host == "" || strings.ContainsAny(host, " \t\r\n") {
		return "", 0, usagef("host %q: not a host name", host)
	}
	port := uint16(22)
	if n == 2 {
		p, err := strconv.ParseUint(c.Args().Get(1), 10, 16)
		if err != nil || p == 0 {
			return "", 0, usagef("port %q: want 1 to 65535", c.Args().Get(1))
		}
		port = uint16(p)
	}
	return host, port, nil
}

// reachQuiet is roles.Reach for a command whose standard error must stay
// empty unless it fails: no log lines unless --log-level asks for them.
func reachQuiet(ctx context.Context, c *cli.Context) (*roles.Reacher, error) {
	cfg, err := reachConfig(c)
	if err != nil {
		return nil, err
	}
	if !c.IsSet("log-level") {
		cfg.Log = zerolog.Nop()
	}
	return roles.Reach(ctx, cfg)
}

package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/transport"
)

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:      "connect",
		Usage:     "join stdin/stdout to HOST:PORT on a device (for ssh's ProxyCommand)",
		UsageText: "tunnel connect [--relay ADDR | --socks HOST:PORT] HOST PORT",
		Description: `The ProxyCommand of 'tunnel ssh-config':
   ssh -o "ProxyCommand=tunnel connect %h %p" pi@<device-id>.tunnel
It goes, in this order: through the SOCKS5 server of --socks; with a node
of its own through the rendezvous node of --relay; through the socksd
running with this --home (over its owner-only control socket, sharing its
connections); with a node of its own through TUNNEL_RELAY. With none of
these it says so. A socksd run with --auth, reached with --socks, wants
--socks-user, and the password in the environment variable
TUNNEL_SOCKS_PASSWORD (never on the command line, which every local user
can read). Standard output carries only the stream; standard error stays
quiet unless something fails.`,
		Flags: []cli.Flag{
			reachRelayFlag(),
			&cli.StringFlag{Name: "socks", EnvVars: []string{"TUNNEL_SOCKS"}, Usage: "go through the SOCKS5 server at HOST:PORT"},
			&cli.StringFlag{Name: "socks-user", EnvVars: []string{"TUNNEL_SOCKS_USER"},
				Usage: "log in to the SOCKS5 server as `USER`, with the password in TUNNEL_SOCKS_PASSWORD"},
			pathFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up connecting after this long"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 2 {
				return usagef("connect needs HOST and PORT, got %d arguments", c.Args().Len())
			}
			host := c.Args().Get(0)
			p, err := strconv.ParseUint(c.Args().Get(1), 10, 16)
			if err != nil || p == 0 {
				return usagef("port %q: want 1 to 65535", c.Args().Get(1))
			}
			port := uint16(p)
			if c.IsSet("socks") && c.IsSet("relay") {
				return usagef("give --relay or --socks, not both")
			}
			cfg, err := reachConfig(c)
			if err != nil {
				return err
			}
			if cfg.SOCKS = c.String("socks"); cfg.SOCKS != "" {
				if err := checkHostPort("--socks", cfg.SOCKS); err != nil {
					return err
				}
			}
			if u := c.String("socks-user"); u != "" {
				pw := os.Getenv("TUNNEL_SOCKS_PASSWORD")
				if cfg.SOCKS == "" || pw == "" {
					return usagef("--socks-user needs --socks and the password in TUNNEL_SOCKS_PASSWORD")
				}
				cfg.SOCKSAuth = &socks.Auth{User: u, Password: pw}
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			stream, done, err := roles.Connect(ctx, cfg, host, port)
			cancel() // the timeout covered connecting only
			if err != nil {
				return err
			}
			defer done()
			_, _, err = transport.Splice(c.Context, transport.Stdio(), stream)
			if err != nil && c.Context.Err() == nil {
				return fmt.Errorf("%s:%d: %w", host, port, err)
			}
			return nil
		},
	}
}

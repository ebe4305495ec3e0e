package main

import (
	"github.com/urfave/cli/v2"

	"github.com/tunnel-dev/tunnel/cmd/roles"
)

func socksdCommand() *cli.Command {
	return &cli.Command{
		Name:  "socksd",
		Usage: "run the local SOCKS5 gateway to <id>.tunnel names",
		Description: `Serves SOCKS5 (RFC 1928) for <device-id>.tunnel:PORT:
   ssh -o "ProxyCommand=nc -X 5 -x localhost:1080 %h %p" pi@<device-id>.tunnel
   curl --socks5-hostname localhost:1080 http://<device-id>.tunnel/
Without --relay it embeds a rendezvous node on --relay-listen, so one machine
works out of the box: point devices at it with --relay HOST:7443.
The same port serves the browser's proxy auto-config file at
http://LISTEN/proxy.pac (only .tunnel hosts go to the proxy) and HTTP CONNECT
for tools that speak only HTTP proxies (git, npm, IDEs).
Replies: 0x02 host not allowed (not .tunnel, unless --fallback direct), 0x04
unknown or offline device or malformed name, 0x05 port not published or
refused by the device's service, 0x06 timeout, 0x07 command not supported.`,
		Flags: []cli.Flag{
			relayFlag(),
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:1080", EnvVars: []string{"TUNNEL_SOCKS_LISTEN"},
				Usage: "TCP address for SOCKS5 clients"},
			&cli.StringFlag{Name: "relay-listen", Value: "127.0.0.1:7443", EnvVars: []string{"TUNNEL_RELAY_LISTEN"},
				Usage: "UDP address of the embedded rendezvous node (only without --relay)"},
			pathFlag(),
			&cli.StringFlag{Name: "fallback", Value: "reject", EnvVars: []string{"TUNNEL_FALLBACK"},
				Usage: "non-.tunnel hosts: reject, or direct (dial them; loopback listeners only)"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg := roles.ClientConfig{Home: c.String("home"), Listen: c.String("listen"), RelayListen: c.String("relay-listen")}
			if err := checkHostPort("--listen", cfg.Listen); err != nil {
				return err
			}
			switch f := c.String("fallback"); f {
			case "reject":
			case "direct":
				cfg.FallbackDirect = true
			default:
				return usagef("--fallback %q: want reject or direct", f)
			}
			var err error
			if c.String("relay") != "" {
				if cfg.Relays, err = relays(c, ""); err != nil {
					return err
				}
			}
			if err := cfg.Check(); err != nil {
				return usageError{err}
			}
			if cfg.Path, err = pathMode(c); err != nil {
				return err
			}
			if cfg.Log, cfg.Key, err = loggerAndKey(c); err != nil {
				return err
			}
			client, err := roles.StartClient(c.Context, cfg)
			if err != nil {
				return err
			}
			return client.Wait()
		},
	}
}

package main

import (
	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
)

func socksdCommand() *cli.Command {
	return withConfig(&cli.Command{
		Name:  "socksd",
		Usage: "run the local SOCKS5 gateway to <id>.tunnel names",
		UsageText: `tunnel socksd [--listen 127.0.0.1:1080] [--auth FILE] [--allow-local-users] [--relay ADDR] [--bind SPEC [--allow-remote]] ...
tunnel socksd passwd [--auth FILE] USER`,
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
refused by the device's service, 0x06 timeout, 0x07 command not supported.

Who may use it: whoever reaches socksd dials with this node's key and fleet
credentials. On loopback (the default) it serves this user's processes and
root's only (Linux; others get 0x02 or HTTP 403), or every local user's with
--allow-local-users. Any other --listen needs --auth FILE: clients then give
a username and password (SOCKS5 username/password, RFC 1929; HTTP CONNECT
with Proxy-Authorization: Basic) listed in FILE, a file of bcrypt hashes
that 'tunnel socksd passwd USER' (or 'htpasswd -B') writes. Password checks
are rate-limited per client address; the PAC file needs no password.`,
		Flags: append([]cli.Flag{
			relayFlag(),
			&cli.StringFlag{Name: "listen", Value: "127.0.0.1:1080", EnvVars: []string{"TUNNEL_SOCKS_LISTEN"},
				Usage: "TCP address for SOCKS5 clients; not loopback only with --auth"},
			&cli.StringFlag{Name: "relay-listen", Value: "127.0.0.1:7443", EnvVars: []string{"TUNNEL_RELAY_LISTEN"},
				Usage: "UDP address of the embedded rendezvous node (only without --relay)"},
			pathFlag(),
			&cli.StringFlag{Name: "fallback", Value: "reject", EnvVars: []string{"TUNNEL_FALLBACK"},
				Usage: "non-.tunnel hosts: reject, or direct (dial them; loopback listeners only)"},
			&cli.StringFlag{Name: "auth", EnvVars: []string{"TUNNEL_SOCKS_AUTH"},
				Usage: "require a username and password listed in `FILE` (htpasswd bcrypt entries, mode 0600; 'tunnel socksd passwd USER' makes them), read at start; then password, not local user, decides"},
			&cli.StringSliceFlag{Name: "bind", Usage: "also forward a local port to a device, `[LISTENHOST:]LOCALPORT:HOST:PORT` as ssh -L (repeatable; see 'tunnel bind --help')"},
			&cli.BoolFlag{Name: "allow-remote", Usage: "let a --bind listen beyond loopback (whoever reaches it uses this node's key and fleet credentials)"},
			&cli.BoolFlag{Name: "allow-local-users", EnvVars: []string{"TUNNEL_ALLOW_LOCAL_USERS"},
				Usage: "serve the loopback clients of every local user, not only this user's and root's (checked on Linux only: elsewhere every local user is served)"},
		}, append(metricsFlags(), memoryLimitFlag(), procsFlag())...),
		Subcommands: []*cli.Command{passwdCommand()},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			cfg := roles.ClientConfig{Home: c.String("home"), Listen: c.String("listen"), RelayListen: c.String("relay-listen"),
				Auth: c.String("auth"), AllowLocalUsers: c.Bool("allow-local-users")}
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
			if cfg.Binds, err = bindSpecs(c.StringSlice("bind")); err != nil {
				return err
			}
			cfg.AllowRemote = c.Bool("allow-remote")
			if err := cfg.Check(); err != nil {
				return usageError{err}
			}
			if cfg.Path, err = pathMode(c); err != nil {
				return err
			}
			var stop func()
			if cfg.Log, cfg.Key, cfg.Metrics, stop, err = startDaemon(c); err != nil {
				return err
			}
			defer stop()
			client, err := roles.StartClient(c.Context, cfg)
			if err != nil {
				return bindUsage(err)
			}
			releaseStartPages(c.Context, client.Node, cfg.Log)
			defer roles.TrimAfterWork()()
			defer onReload(c.Context, func() { nothingReloads(cfg.Log, "socksd") })()
			return client.Wait()
		},
	})
}

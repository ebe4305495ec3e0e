package main

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/urfave/cli/v2"

	"github.com/tunnel-dev/tunnel/socks"
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
			if c.Args().Len() > 0 {
				return usagef("socksd takes no arguments, got %q", c.Args().First())
			}
			listen := c.String("listen")
			if err := checkHostPort("--listen", listen); err != nil {
				return err
			}
			fallback := c.String("fallback")
			switch fallback {
			case "reject":
			case "direct":
				if !isLoopback(listen) {
					return usagef("--fallback direct would make %s an open proxy: it is allowed only on a loopback --listen", listen)
				}
			default:
				return usagef("--fallback %q: want reject or direct", fallback)
			}
			embedded := c.String("relay") == ""
			if embedded {
				if err := checkHostPort("--relay-listen", c.String("relay-listen")); err != nil {
					return err
				}
			} else if _, err := relayAddr(c, ""); err != nil {
				return err
			}
			mode, err := pathMode(c)
			if err != nil {
				return err
			}
			log, key, err := loggerAndKey(c)
			if err != nil {
				return err
			}
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen for SOCKS clients on %s: %w", listen, err)
			}
			defer ln.Close()

			var relay relayList
			if embedded {
				rn, err := startRelay(c.Context, key, c.String("relay-listen"), log)
				if err != nil {
					return err
				}
				defer rn.stop()
				relay = relayList{{ID: key.ID(), HostPort: rn.dialAddr()}}
			} else if relay, err = relayAddr(c, ""); err != nil {
				return err
			}
			n, err := startNode(c.Context, key, relay, false, mode, log)
			if err != nil {
				return err
			}
			defer n.close()
			dialer := &socks.TunnelDialer{Node: n.Node, Resolver: n.resolver, Log: log, Credential: credentials(c.String("home"))}
			stopStatus := serveStatus(c.Context, c.String("home"), "socksd", n, log)
			defer stopStatus()
			if fallback == "direct" {
				dialer.Fallback = socks.DirectFallback
			}
			defer dialer.Close()
			log.Info().Str("listen", ln.Addr().String()).Str("relay", relay.String()).Str("id", key.ID().String()).
				Str("fallback", fallback).Msg("socksd listening")
			front := &socks.HTTPFront{Dial: dialer.Dial, Log: log, Listen: ln.Addr().String()}
			srv := &socks.Server{Dial: dialer.Dial, Log: log, Other: front.ServeConn}
			return srv.Serve(c.Context, ln)
		},
	}
}

func isLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

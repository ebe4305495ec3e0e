package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/transport"
)

func connectCommand() *cli.Command {
	return &cli.Command{
		Name:      "connect",
		Usage:     "join stdin/stdout to HOST:PORT on a device (for ssh's ProxyCommand)",
		UsageText: "tunnel connect [--relay ADDR | --socks HOST:PORT] HOST PORT",
		Description: `For machines without 'nc -X' (Windows, GNU netcat):
   ssh -o "ProxyCommand=tunnel connect %h %p" pi@<device-id>.tunnel
With --socks it goes through a running socksd; otherwise it reaches the
device itself through the rendezvous node (--relay, TUNNEL_RELAY, default
127.0.0.1:7443). Standard output carries only the stream; standard error
stays quiet unless something fails.`,
		Flags: []cli.Flag{
			relayFlag(),
			&cli.StringFlag{Name: "socks", EnvVars: []string{"TUNNEL_SOCKS"}, Usage: "go through the SOCKS5 server at HOST:PORT"},
			pathFlag(),
			&cli.DurationFlag{Name: "timeout", Value: 30 * time.Second, Usage: "give up connecting after this long"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 2 {
				return usagef("connect needs HOST and PORT, got %d arguments", c.Args().Len())
			}
			host := c.Args().Get(0)
			port, err := strconv.ParseUint(c.Args().Get(1), 10, 16)
			if err != nil || port == 0 {
				return usagef("port %q: want 1 to 65535", c.Args().Get(1))
			}
			if c.IsSet("socks") && c.IsSet("relay") {
				return usagef("give --relay or --socks, not both")
			}
			mode, err := pathMode(c)
			if err != nil {
				return err
			}
			log, err := newLogger(c, true)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			defer cancel()
			var stream transport.HalfConn
			if s := c.String("socks"); s != "" {
				if err := checkHostPort("--socks", s); err != nil {
					return err
				}
				stream, err = dialViaSOCKS(ctx, s, host, uint16(port))
				if err != nil {
					return err
				}
			} else {
				id, isTunnel, err := resolver.ParseName(host)
				if err != nil {
					return err
				}
				if !isTunnel {
					return fmt.Errorf("%s is not a .tunnel name (use --socks with a socksd that falls back, or connect directly)", host)
				}
				relay, err := relayAddr(c, defaultRelay)
				if err != nil {
					return err
				}
				key, err := identity.LoadOrCreate(c.String("home"))
				if err != nil {
					return err
				}
				n, err := startNode(c.Context, key, relay, false, mode, log)
				if err != nil {
					return err
				}
				defer n.close()
				dialer := &socks.TunnelDialer{Node: n.Node, Resolver: n.resolver, Log: log, Credential: credentials(c.String("home"))}
				defer dialer.Close()
				stream, err = dialer.DialDevice(ctx, id, uint16(port))
				if err != nil {
					return fmt.Errorf("connect to %s:%d: %w", host, port, err)
				}
			}
			cancel() // the timeout covered connecting only
			_, _, err = transport.Splice(c.Context, stdio{}, stream)
			if err != nil && c.Context.Err() == nil {
				return fmt.Errorf("%s:%d: %w", host, port, err)
			}
			return nil
		},
	}
}

// dialViaSOCKS opens host:port through a SOCKS5 server.
func dialViaSOCKS(ctx context.Context, server, host string, port uint16) (transport.HalfConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server)
	if err != nil {
		return nil, fmt.Errorf("connect to SOCKS server %s: %w", server, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	req, err := socks.AppendRequest([]byte{5, 1, 0}, socks.Request{Cmd: 1, AddrType: 3, Host: host, Port: port})
	if err != nil {
		c.Close()
		return nil, err
	}
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, fmt.Errorf("SOCKS server %s: %w", server, err)
	}
	var method [2]byte
	if _, err := io.ReadFull(c, method[:]); err != nil || method[0] != 5 || method[1] != 0 {
		c.Close()
		return nil, fmt.Errorf("SOCKS server %s refused the greeting (%x, %v)", server, method, err)
	}
	code, err := socks.ReadReply(c)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("SOCKS server %s: %w", server, err)
	}
	if code != socks.ReplySucceeded {
		c.Close()
		return nil, fmt.Errorf("connect to %s:%d via %s: %s", host, port, server, replyText(code))
	}
	_ = c.SetDeadline(time.Time{})
	return transport.Conn(c), nil
}

// stdio is standard input and output as one HalfConn.
type stdio struct{}

func (stdio) Read(p []byte) (int, error)  { return os.Stdin.Read(p) }
func (stdio) Write(p []byte) (int, error) { return os.Stdout.Write(p) }
func (stdio) CloseWrite() error           { return os.Stdout.Close() }
func (stdio) Abort()                      { os.Stdin.Close(); os.Stdout.Close() }
func (stdio) Close() error                { os.Stdin.Close(); return nil }

// replyText explains a SOCKS reply code to a person.
func replyText(code byte) string {
	switch code {
	case socks.ReplyNotAllowed:
		return "not allowed (0x02): access denied, or not a .tunnel host"
	case socks.ReplyHostUnreachable:
		return "host unreachable (0x04): unknown or offline device, or malformed name"
	case socks.ReplyConnectionRefused:
		return "refused (0x05): port not published, or the device's service refused"
	case socks.ReplyTTLExpired:
		return "timed out (0x06)"
	case socks.ReplyCommandNotSupported:
		return "command not supported (0x07)"
	case socks.ReplyNetworkUnreachable:
		return "network unreachable (0x03)"
	case socks.ReplyAddressNotSupported:
		return "address type not supported (0x08)"
	}
	return fmt.Sprintf("failed (0x%02x)", code)
}

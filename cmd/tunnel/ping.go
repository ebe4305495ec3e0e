package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/dialer"
)

func pingCommand() *cli.Command {
	return &cli.Command{
		Name:      "ping",
		Usage:     "ask a device for an answer over the end-to-end connection; print the path and round trip",
		UsageText: "tunnel ping [--relay ADDR] [--count N] [--interval D] HOST",
		Description: `Like 'tailscale ping': opens (or, through the running socksd, reuses) the
end-to-end connection to HOST (<id>.tunnel or a name) and prints, per
round, the path — "direct ADDR" or "relayed via ADDR" — and the round trip
of one request on it. Exits 0 once any round got an answer; otherwise
non-zero, with the reason. Reaches devices as 'tunnel connect' does.`,
		Flags: []cli.Flag{
			reachRelayFlag(),
			pathFlag(),
			&cli.IntFlag{Name: "count", Aliases: []string{"c"}, Value: 4, Usage: "rounds"},
			&cli.DurationFlag{Name: "interval", Aliases: []string{"i"}, Value: time.Second, Usage: "wait between rounds"},
			&cli.DurationFlag{Name: "timeout", Value: 20 * time.Second, Usage: "give up on one round after this long"},
		},
		Action: func(c *cli.Context) error {
			host, _, err := hostPortArgs(c, "ping", false)
			if err != nil {
				return err
			}
			// `tunnel ping garage`: .tunnel is optional, as in bind's SPEC.
			if _, isTunnel, _ := resolver.ParseName(host); !isTunnel && !strings.ContainsAny(host, ":[]") {
				if _, err := netip.ParseAddr(host); err != nil {
					host = strings.TrimSuffix(host, ".") + resolver.Suffix
				}
			}
			count := c.Int("count")
			if count < 1 {
				return usagef("--count %d: want at least 1", count)
			}
			if c.Duration("interval") < 0 || c.Duration("timeout") <= 0 {
				return usagef("--interval must not be negative, --timeout must be positive")
			}
			ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
			r, err := reachQuiet(ctx, c)
			cancel()
			if err != nil {
				return err
			}
			defer r.Close()
			var answered int
			var last error
			for i := range count {
				if i > 0 {
					select {
					case <-time.After(c.Duration("interval")):
					case <-c.Context.Done():
						return pingResult(answered, c.Context.Err())
					}
				}
				ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
				p, err := r.Ping(ctx, host)
				cancel()
				if err != nil {
					last = err
					if c.Context.Err() != nil {
						break
					}
					fmt.Fprintf(c.App.Writer, "no answer: %v\n", err)
					continue
				}
				answered++
				fmt.Fprintf(c.App.Writer, "pong from %s %s in %v\n", shortHost(host), pongPath(p), p.RTT.Round(10*time.Microsecond))
			}
			return pingResult(answered, last)
		},
	}
}

// pongPath says how the answer came: "via direct ADDR" or "relayed via
// ADDR".
func pongPath(p dialer.Pong) string {
	if p.Path == "direct" {
		return "via direct " + p.Via
	}
	return "relayed via " + p.Via
}

// shortHost is a device's short ID for an ID name, a name as it is.
func shortHost(host string) string {
	if id, ok, err := resolver.ParseName(host); err == nil && ok {
		return id.Short()
	}
	return host
}

func pingResult(answered int, last error) error {
	if answered > 0 {
		return nil
	}
	if last == nil {
		last = errors.New("interrupted")
	}
	return fmt.Errorf("no answer: %w", last)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/socks/forward"
	"github.com/tunnel-dev/tunnel/transport"
)

func bindCommand() *cli.Command {
	return &cli.Command{
		Name:      "bind",
		Usage:     "forward local TCP ports to devices, like ssh -L",
		UsageText: "tunnel bind [--relay ADDR] [--allow-remote] SPEC [SPEC ...]",
		Description: `SPEC is [LISTENHOST:]LOCALPORT:HOST:PORT, in ssh -L order:
   tunnel bind 2222:garage:22 5432:<device-id>:5432
   ssh -p 2222 pi@127.0.0.1
Each connection to LISTENHOST:LOCALPORT becomes one stream to HOST:PORT on
the device. LISTENHOST is 127.0.0.1 unless given: an IPv6 address goes in
brackets ([::1]:2222:garage:22), * is every interface. LOCALPORT 0 takes
a free port (the line printed at start says which). HOST is a device ID or
a name ('tunnel name'), .tunnel optional.

Whoever reaches a bound port uses this node's key and fleet credentials,
with no password: a LISTENHOST that is not loopback is refused unless
--allow-remote.

It reaches devices as 'tunnel connect' does: with a node of its own through
--relay; else through the socksd running with this --home; else with a
node of its own through TUNNEL_RELAY. It prints one line per bind on
standard error and runs until interrupted. A device that cannot be reached
closes the connection at once (logged at most once per 10 s per bind); the
port stays open. At most 256 connections per bind at once.
A malformed SPEC, a refused LISTENHOST or a port in use exits with status 2
before anything is served.`,
		Flags: []cli.Flag{
			reachRelayFlag(),
			&cli.BoolFlag{Name: "allow-remote", Usage: "let a SPEC listen beyond loopback (whoever reaches it uses this node's key and fleet credentials)"},
			pathFlag(),
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() == 0 {
				return usagef("bind needs at least one SPEC, [LISTENHOST:]LOCALPORT:HOST:PORT")
			}
			specs, err := bindSpecs(c.Args().Slice())
			if err != nil {
				return err
			}
			allowRemote := c.Bool("allow-remote")
			for _, s := range specs {
				if err := s.CheckListen(allowRemote); err != nil {
					return usageError{err}
				}
			}
			cfg, err := reachConfig(c)
			if err != nil {
				return err
			}
			// Refused connections are logged at warn: shown unless asked
			// otherwise, while the node's routine lines are not.
			if !c.IsSet("log-level") {
				if cfg.Log, err = roles.NewLogger("warn", c.String("log-format")); err != nil {
					return usageError{err}
				}
			}
			return runBinds(c.Context, cfg, specs, allowRemote)
		},
	}
}

// runBinds binds every port first, so that a port in use fails before
// anything runs, then finds how to reach devices and serves until ctx
// ends or a listener fails.
func runBinds(ctx context.Context, cfg roles.ConnectConfig, specs []forward.Spec, allowRemote bool) error {
	var reacher *roles.Reacher
	dial := func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		return reacher.Dial(ctx, host, port)
	}
	var fs []*forward.Forwarder
	closeAll := func() {
		for _, f := range fs {
			f.Close()
		}
	}
	for _, s := range specs {
		f, err := forward.Listen(ctx, s, forward.Config{Dial: dial, Log: cfg.Log, AllowRemote: allowRemote})
		if err != nil {
			closeAll()
			return bindUsage(err)
		}
		fs = append(fs, f)
	}
	reacher, err := roles.Reach(ctx, cfg)
	if err != nil {
		closeAll()
		return err
	}
	defer reacher.Close()
	defer roles.TrimAfterWork()()
	for _, f := range fs {
		fmt.Fprintln(os.Stderr, f.String())
	}
	cfg.Log.Info().Str("via", reacher.Via()).Msg("bind serving")

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(fs))
	for i, f := range fs {
		wg.Go(func() {
			errs[i] = f.Serve(ctx)
			cancel() // one listener failing ends them all
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// bindSpecs parses SPECs (tunnel bind's arguments, socksd's --bind); a
// malformed one is a usage error.
func bindSpecs(args []string) ([]forward.Spec, error) {
	specs := make([]forward.Spec, 0, len(args))
	for _, a := range args {
		s, err := forward.ParseSpec(a)
		if err != nil {
			return nil, usageError{err}
		}
		specs = append(specs, s)
	}
	return specs, nil
}

// bindUsage makes a bind's port that cannot be bound (in use, not
// permitted) a usage error, exit status 2, as a malformed SPEC is: the
// user has to pick another.
func bindUsage(err error) error {
	if _, ok := errors.AsType[*forward.ListenError](err); ok {
		return usageError{err}
	}
	return err
}

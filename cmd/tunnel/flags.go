package main

import (
	"math"
	"strings"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/cmd/roles/metrics"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
)

// Flags several commands share, and what they turn into.

const defaultRelay = "127.0.0.1:7443"

func relayFlag() cli.Flag {
	return &cli.StringFlag{Name: "relay", EnvVars: []string{"TUNNEL_RELAY"},
		Usage: "rendezvous node, HOST:PORT or ID@HOST:PORT (then its key is checked); several, comma-separated (A,B,...), for nodes sharing a registry: the reachable one answering first is used"}
}

// relays parses --relay, falling back to def when it is not set.
func relays(c *cli.Context, def string) ([]resolver.RelayAddr, error) {
	v := c.String("relay")
	if v == "" {
		v = def
	}
	l, err := resolver.ParseRelayList(v)
	if err != nil {
		return nil, usageError{err}
	}
	return l, nil
}

func pathFlag() cli.Flag {
	return &cli.StringFlag{Name: "path", Value: "auto", EnvVars: []string{"TUNNEL_PATH"},
		Usage: "auto (relay first, direct when punched), direct (never relay stream bytes) or relay (never go direct)"}
}

func pathMode(c *cli.Context) (transport.PathMode, error) {
	m, err := transport.ParsePathMode(c.String("path"))
	if err != nil {
		return m, usageError{err}
	}
	return m, nil
}

// startDaemon is what every long-running command but the gateway does once
// its own flags are checked: check --metrics, apply --memory-limit and
// check --procs (so that a usage error creates no key), build the logger
// the global flags ask for, load (or create) the node's key, start the
// metrics listener and, for the roles with --procs, carry it out; stop
// stops both. On an error nothing is left running.
func startDaemon(c *cli.Context) (log zerolog.Logger, key *identity.Key, col *metrics.Collector, stop func(), err error) {
	if err = checkMetrics(c); err != nil {
		return log, nil, nil, nil, err
	}
	if err = applyMemoryLimit(c); err != nil {
		return log, nil, nil, nil, err
	}
	ps, hasProcs, err := procsSetting(c)
	if err != nil {
		return log, nil, nil, nil, err
	}
	if log, err = newLogger(c, false); err != nil {
		return log, nil, nil, nil, err
	}
	if key, err = identity.LoadOrCreate(c.String("home")); err != nil {
		return log, nil, nil, nil, err
	}
	if col, stop, err = startMetrics(c, log); err != nil || !hasProcs {
		return log, key, col, stop, err
	}
	stopMetrics, stopProcs := stop, applyProcs(ps, log)
	return log, key, col, func() { stopProcs(); stopMetrics() }, nil
}

// checkHostPort checks a HOST:PORT flag.
func checkHostPort(flag, v string) error {
	if err := roles.CheckHostPort(flag, v); err != nil {
		return usageError{err}
	}
	return nil
}

// noArgs refuses arguments to a command that takes none.
func noArgs(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("%s takes no arguments, got %q", commandPath(c), c.Args().First())
	}
	return nil
}

// commandPath names the command being run as a user typed it, without
// the program: "fleet names list", not "list".
func commandPath(c *cli.Context) string {
	var names []string
	for _, l := range c.Lineage() {
		if l.Command != nil && l.Command.Name != "" {
			names = append([]string{l.Command.Name}, names...)
		}
	}
	if len(names) > 1 { // the outermost is the program's own
		names = names[1:]
	}
	return strings.Join(names, " ")
}

// limitFlag is a flag for a cap: a whole number of at least 1.
func limitFlag(name string, def int, usage string) cli.Flag {
	return &cli.IntFlag{Name: name, Value: def, Usage: usage}
}

// rateFlag is a flag for a rate: a number of events per second above 0.
func rateFlag(name string, def float64, usage string) cli.Flag {
	return &cli.Float64Flag{Name: name, Value: def, Usage: usage}
}

// limits reads the limitFlags named, in order, each checked.
func limits(c *cli.Context, names ...string) ([]int, error) {
	out := make([]int, len(names))
	for i, n := range names {
		if out[i] = c.Int(n); out[i] < 1 {
			return nil, usagef("--%s %d: want at least 1", n, out[i])
		}
	}
	return out, nil
}

// rate reads a rateFlag, checked.
func rate(c *cli.Context, name string) (float64, error) {
	r := c.Float64(name)
	if !(r > 0) || math.IsInf(r, 0) {
		return 0, usagef("--%s %v: want a number per second above 0", name, r)
	}
	return r, nil
}

package main

import (
	"os"
	"runtime/debug"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/resolver/registry"
)

func relayCommand() *cli.Command {
	def := registry.DefaultLimits()
	return withConfig(&cli.Command{
		Name:  "relay",
		Usage: "run a rendezvous node: the registry of who is online and the relay of last resort",
		Description: `Devices register here by proving their key; clients look devices up here;
end-to-end packets between them cross this node as opaque bytes it can
neither read nor forge. Give devices and clients ID@HOST:PORT (the ID is
'tunnel id' with this node's --home) so they check they reached this node.
Anyone on the internet can reach this node: the --max-* and --*-rate
flags bound what they can make it spend; each refusal is counted and
logged at most once per source or key per 10 s.`,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "0.0.0.0:7443", EnvVars: []string{"TUNNEL_RELAY_LISTEN"},
				Usage: "UDP address to serve on"},
			&cli.StringFlag{Name: "registry", Value: "memory", EnvVars: []string{"TUNNEL_REGISTRY"},
				Usage: "where presence is kept: memory (this node alone) or redis://[USER:PASSWORD@]HOST:PORT/DB (rediss:// for TLS), shared by several nodes; give a password in TUNNEL_REGISTRY rather than here, where ps shows it"},
			&cli.StringFlag{Name: "registry-ca", EnvVars: []string{"TUNNEL_REGISTRY_CA"},
				Usage: "PEM `FILE` of the CA(s) to trust for a rediss:// registry instead of the system's"},
			&cli.StringFlag{Name: "advertise", EnvVars: []string{"TUNNEL_ADVERTISE"},
				Usage: "HOST:PORT other nodes' clients reach this node at (required with a redis registry)"},
			limitFlag("max-conns", def.MaxConns, "connections from nodes, in all"),
			limitFlag("max-conns-per-source", def.MaxConnsPerSource, "connections from one source address (IPv4, or IPv6 /64)"),
			limitFlag("max-streams-per-conn", def.MaxStreams, "registry requests one connection may have open"),
			rateFlag("handshake-rate", def.HandshakeRate, "new connections per second before sources must prove their address (a QUIC Retry)"),
			rateFlag("lookup-rate", def.LookupRate, "lookups per second one key may make (bursts of twice that)"),
			limitFlag("max-registrations", def.MaxRegistrations, "nodes registered here, in all"),
		}, append(metricsFlags(), memoryLimitFlag())...),
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			if err := checkHostPort("--listen", c.String("listen")); err != nil {
				return err
			}
			cfg := roles.RelayConfig{Listen: c.String("listen"), Registry: c.String("registry"), RegistryCA: c.String("registry-ca"),
				Advertise: c.String("advertise")}
			if err := cfg.Check(); err != nil {
				return usageError{err}
			}
			caps, err := limits(c, "max-conns", "max-conns-per-source", "max-streams-per-conn", "max-registrations")
			if err != nil {
				return err
			}
			cfg.Limits = registry.Limits{MaxConns: caps[0], MaxConnsPerSource: caps[1], MaxStreams: caps[2], MaxRegistrations: caps[3]}
			if cfg.Limits.HandshakeRate, err = rate(c, "handshake-rate"); err != nil {
				return err
			}
			if cfg.Limits.LookupRate, err = rate(c, "lookup-rate"); err != nil {
				return err
			}
			var stop func()
			if cfg.Log, cfg.Key, cfg.Metrics, stop, err = startDaemon(c); err != nil {
				return err
			}
			defer stop()
			// A relay's memory is its idle devices' connection state, and
			// its packet path allocates nothing, so collecting garbage more
			// often costs little CPU and saves the heap headroom Go keeps
			// by default (GOGC=100 doubles the live heap). GOGC overrides.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(relayGCPercent)
			}
			r, err := roles.StartRelay(c.Context, cfg)
			if err != nil {
				return err
			}
			defer onReload(c.Context, func() { nothingReloads(cfg.Log, "relay") })()
			return r.Wait()
		},
	})
}

// relayGCPercent is the relay's GOGC.
const relayGCPercent = 25

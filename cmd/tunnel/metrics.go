package main

import (
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles/metrics"
)

// metricsFlags are the flags of every long-running role that serves
// Prometheus metrics.
func metricsFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "metrics", EnvVars: []string{"TUNNEL_METRICS"},
			Usage: "serve Prometheus metrics at http://`HOST:PORT`/metrics (loopback only unless --metrics-allow-remote)"},
		&cli.BoolFlag{Name: "metrics-allow-remote", EnvVars: []string{"TUNNEL_METRICS_ALLOW_REMOTE"},
			Usage: "let --metrics listen beyond loopback (whoever reaches it sees the node's load and refusals)"},
	}
}

// checkMetrics checks the --metrics flags, with the other flags: a bad
// address is a usage error before anything starts.
func checkMetrics(c *cli.Context) error {
	if addr := c.String("metrics"); addr != "" {
		if err := metrics.CheckListen(addr, c.Bool("metrics-allow-remote")); err != nil {
			return usageError{err}
		}
	}
	return nil
}

// startMetrics serves /metrics if --metrics is set, once the flags are
// checked and before the role starts (a port in use fails with nothing
// started). The role adds its counters to the Collector (nil without
// --metrics); stop, called when the role has ended, stops the server.
func startMetrics(c *cli.Context, log zerolog.Logger) (col *metrics.Collector, stop func(), err error) {
	addr := c.String("metrics")
	if addr == "" {
		return nil, func() {}, nil
	}
	col = metrics.NewCollector()
	srv, err := metrics.Listen(addr, c.Bool("metrics-allow-remote"), metrics.NewRegistry(col))
	if err != nil {
		return nil, nil, err
	}
	log.Info().Str("metrics", "http://"+srv.Addr().String()+"/metrics").Msg("metrics listening")
	return col, func() { _ = srv.Close() }, nil
}

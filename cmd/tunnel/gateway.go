package main

import (
	"errors"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/socks/gateway"
)

func gatewayCommand() *cli.Command {
	def := gateway.DefaultLimits()
	return withConfig(&cli.Command{
		Name:  "gateway",
		Usage: "run a shared public gateway: SOCKS5 and HTTP(S) to devices' public ports",
		UsageText: "tunnel gateway [--relay ADDR] [--socks HOST:PORT] [--http HOST:PORT] [--domain DOMAIN]\n" +
			"   [--https HOST:PORT --tls-cert FILE --tls-key FILE] [--rate-conn N] [--max-streams N] [--max-total N]",
		Description: `A gateway anyone may use without installing anything. It dials devices
with its own key: gateway.key in --home, created on first use (mode 0600),
never node.key, the identity 'tunnel id' prints, which a device may list
in -private or a fleet may have certified. So a device sees the gateway
as the client: only ports published with -public are reachable; private
and protected ones answer "denied" (SOCKS 0x02, HTTP 403). The gateway's
ID is the id= of its "gateway listening" log line.
   --socks   SOCKS5 for <device-id>.tunnel:PORT only; any other host or IP
             gets 0x02, never a direct connection
   --http    routed by Host: <device-id>.DOMAIN is the device's port 80,
             <device-id>-PORT.DOMAIN that port; the device's web server sees
             the Host as typed, plus X-Forwarded-For/-Host/-Proto
   --https   the same over TLS, with a certificate for *.DOMAIN
Each source address (IPv4, or IPv6 /64) may open --rate-conn new streams
(SOCKS connections, HTTP requests) per second with bursts of twice that,
and hold --max-streams open; --max-total caps all sources together, and
near it (its last fifth) sources holding more than their share are
refused first, so a newcomer still gets in. Over the limit: SOCKS 0x02,
HTTP 429 with Retry-After.
Without --relay it uses the rendezvous node at 127.0.0.1:7443.`,
		Flags: append([]cli.Flag{
			relayFlag(),
			&cli.StringFlag{Name: "socks", EnvVars: []string{"TUNNEL_GATEWAY_SOCKS"},
				Usage: "TCP address for SOCKS5 clients, e.g. 0.0.0.0:1080"},
			&cli.StringFlag{Name: "http", EnvVars: []string{"TUNNEL_GATEWAY_HTTP"},
				Usage: "TCP address for HTTP, e.g. 0.0.0.0:80 (needs --domain)"},
			&cli.StringFlag{Name: "https", EnvVars: []string{"TUNNEL_GATEWAY_HTTPS"},
				Usage: "TCP address for HTTPS, e.g. 0.0.0.0:443 (needs --domain, --tls-cert, --tls-key)"},
			&cli.StringFlag{Name: "domain", EnvVars: []string{"TUNNEL_GATEWAY_DOMAIN"},
				Usage: "the domain whose subdomains name devices: <device-id>[-PORT].DOMAIN"},
			&cli.StringFlag{Name: "tls-cert", EnvVars: []string{"TUNNEL_GATEWAY_TLS_CERT"},
				Usage: "PEM certificate (chain) for *.DOMAIN"},
			&cli.StringFlag{Name: "tls-key", EnvVars: []string{"TUNNEL_GATEWAY_TLS_KEY"},
				Usage: "PEM private key of --tls-cert"},
			&cli.Float64Flag{Name: "rate-conn", Value: def.ConnRate,
				Usage: "new streams per second per source address (bursts of twice that)"},
			&cli.IntFlag{Name: "max-streams", Value: def.MaxStreams,
				Usage: "open streams (and HTTP connections) per source address"},
			&cli.IntFlag{Name: "max-total", Value: def.MaxTotal,
				Usage: "open streams (and HTTP connections) over all sources"},
			pathFlag(),
		}, metricsFlags()...),
		Action: runGateway,
	})
}

// gatewayFlags turns the flags into the gateway's config, checked.
func gatewayFlags(c *cli.Context) (roles.GatewayConfig, error) {
	g := roles.GatewayConfig{Home: c.String("home"), SOCKS: c.String("socks"), HTTP: c.String("http"), HTTPS: c.String("https"),
		Domain: c.String("domain"), CertFile: c.String("tls-cert"), KeyFile: c.String("tls-key"),
		Limits: gateway.Limits{ConnRate: c.Float64("rate-conn"), MaxStreams: c.Int("max-streams"), MaxTotal: c.Int("max-total")}}
	if err := noArgs(c); err != nil {
		return g, err
	}
	if err := g.Check(); err != nil {
		return g, usageError{err}
	}
	var err error
	if g.Relays, err = relays(c, defaultRelay); err != nil {
		return g, err
	}
	if g.Path, err = pathMode(c); err != nil {
		return g, err
	}
	return g, checkMetrics(c)
}

func runGateway(c *cli.Context) error {
	cfg, err := gatewayFlags(c)
	if err != nil {
		return err
	}
	// Not loggerAndKey: that loads node.key, and the gateway must never
	// dial with the identity of the home's person (gateway.KeyFile).
	if cfg.Log, err = newLogger(c, false); err != nil {
		return err
	}
	if cfg.Key, err = gateway.LoadOrCreateKey(c.String("home")); err != nil {
		return err
	}
	var stopMetrics func()
	if cfg.Metrics, stopMetrics, err = startMetrics(c, cfg.Log); err != nil {
		return err
	}
	defer stopMetrics()
	defer roles.TrimAfterWork()()
	g, err := roles.StartGateway(c.Context, cfg)
	if err != nil {
		return err
	}
	stop := onReload(c.Context, func() {
		switch err := g.ReloadTLS(); {
		case errors.Is(err, roles.ErrNoCertFiles):
			cfg.Log.Info().Msg("reload: no --tls-cert file, nothing to reload (other settings need a restart)")
		case err != nil:
			cfg.Log.Error().Err(err).Msg("reload refused: the certificate in use stays")
		default:
			cfg.Log.Info().Str("tls_cert", cfg.CertFile).Time("not_after", g.TLSLeaf().NotAfter).Msg("reloaded the TLS certificate")
		}
	})
	defer stop()
	return g.Wait()
}

package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"

	"github.com/urfave/cli/v2"

	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/gateway"
)

func gatewayCommand() *cli.Command {
	def := gateway.DefaultLimits()
	return &cli.Command{
		Name:  "gateway",
		Usage: "run a shared public gateway: SOCKS5 and HTTP(S) to devices' public ports",
		UsageText: "tunnel gateway [--relay ADDR] [--socks HOST:PORT] [--http HOST:PORT] [--domain DOMAIN]\n" +
			"   [--https HOST:PORT --tls-cert FILE --tls-key FILE] [--rate-conn N] [--max-streams N] [--max-total N]",
		Description: `A gateway anyone may use without installing anything. It dials devices
with its own key (--home), so a device sees the gateway as the client:
only ports published with -public are reachable; private and protected
ones answer "denied" (SOCKS 0x02, HTTP 403).
   --socks   SOCKS5 for <device-id>.tunnel:PORT only; any other host or IP
             gets 0x02, never a direct connection
   --http    routed by Host: <device-id>.DOMAIN is the device's port 80,
             <device-id>-PORT.DOMAIN that port; the device's web server sees
             the Host as typed, plus X-Forwarded-For/-Host/-Proto
   --https   the same over TLS, with a certificate for *.DOMAIN
Each source address (IPv4, or IPv6 /64) may open --rate-conn new streams
(SOCKS connections, HTTP requests) per second with bursts of twice that,
and hold --max-streams open; --max-total caps all sources together. Over
the limit: SOCKS 0x02, HTTP 429 with Retry-After.
Without --relay it uses the rendezvous node at 127.0.0.1:7443.`,
		Flags: []cli.Flag{
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
		},
		Action: runGateway,
	}
}

// gatewayConfig is what the flags ask for, checked.
type gatewayConfig struct {
	socks, http, https string
	domain             string
	tls                *tls.Config
	limits             gateway.Limits
}

func gatewayFlags(c *cli.Context) (gatewayConfig, error) {
	var g gatewayConfig
	if c.Args().Len() > 0 {
		return g, usagef("gateway takes no arguments, got %q", c.Args().First())
	}
	g.socks, g.http, g.https = c.String("socks"), c.String("http"), c.String("https")
	if g.socks == "" && g.http == "" && g.https == "" {
		return g, usagef("gateway serves nothing: give --socks, --http or --https")
	}
	for _, f := range []struct{ name, v string }{{"--socks", g.socks}, {"--http", g.http}, {"--https", g.https}} {
		if f.v == "" {
			continue
		}
		if err := checkHostPort(f.name, f.v); err != nil {
			return g, err
		}
	}
	if d := c.String("domain"); d != "" {
		dom, err := gateway.CheckDomain(d)
		if err != nil {
			return g, usagef("--domain: %v", err)
		}
		g.domain = dom
	} else if g.http != "" || g.https != "" {
		return g, usagef("--http and --https need --domain (devices are <device-id>.DOMAIN)")
	}
	cert, key := c.String("tls-cert"), c.String("tls-key")
	switch {
	case g.https != "" && (cert == "" || key == ""):
		return g, usagef("--https needs both --tls-cert and --tls-key (a certificate for *.%s)", g.domain)
	case g.https == "" && (cert != "" || key != ""):
		return g, usagef("--tls-cert and --tls-key are used only with --https")
	case g.https != "":
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return g, usagef("--tls-cert %q, --tls-key %q: %v", cert, key, err)
		}
		g.tls = &tls.Config{Certificates: []tls.Certificate{pair}}
	}
	rate := c.Float64("rate-conn")
	if !(rate > 0) || math.IsInf(rate, 0) {
		return g, usagef("--rate-conn %v: want a number of connections per second above 0", rate)
	}
	g.limits = gateway.Limits{ConnRate: rate, ConnBurst: max(1, int(math.Ceil(2*rate))),
		MaxStreams: c.Int("max-streams"), MaxTotal: c.Int("max-total")}
	if g.limits.MaxStreams < 1 {
		return g, usagef("--max-streams %d: want at least 1", g.limits.MaxStreams)
	}
	if g.limits.MaxTotal < 1 {
		return g, usagef("--max-total %d: want at least 1", g.limits.MaxTotal)
	}
	return g, nil
}

func runGateway(c *cli.Context) error {
	g, err := gatewayFlags(c)
	if err != nil {
		return err
	}
	relay, err := relayAddr(c, defaultRelay)
	if err != nil {
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
	if g.tls != nil {
		// A certificate that does not cover device names is a mistake an
		// operator wants to hear about, but not a reason to refuse to run.
		leaf := g.tls.Certificates[0].Leaf
		if leaf != nil && leaf.VerifyHostname(key.ID().String()+"-8080."+g.domain) != nil {
			log.Warn().Strs("names", leaf.DNSNames).Str("want", "*."+g.domain).
				Msg("the TLS certificate does not cover <device-id>." + g.domain)
		}
	}

	// Listen on everything first, so that a taken port fails before anything
	// starts. Serve owns a listener from then on.
	type front struct {
		name, addr string
		ln         net.Listener
	}
	fronts := []*front{{name: "socks", addr: g.socks}, {name: "http", addr: g.http}, {name: "https", addr: g.https}}
	for _, f := range fronts {
		if f.addr == "" {
			continue
		}
		if f.ln, err = net.Listen("tcp", f.addr); err != nil {
			for _, o := range fronts {
				if o.ln != nil {
					o.ln.Close()
				}
			}
			return fmt.Errorf("listen for %s on %s: %w", f.name, f.addr, err)
		}
	}

	n, err := startNode(c.Context, key, relay, false, mode, log)
	if err != nil {
		for _, f := range fronts {
			if f.ln != nil {
				f.ln.Close()
			}
		}
		return err
	}
	defer n.close()
	// No Credential: a public gateway must never present a fleet
	// membership, or strangers would inherit it.
	dialer := &socks.TunnelDialer{Node: n.Node, Resolver: n.resolver, Log: log}
	defer dialer.Close()
	stopStatus := serveStatus(c.Context, c.String("home"), "gateway", n, log)
	defer stopStatus()

	lim := gateway.NewLimiter(g.limits)
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	run := func(name string, serve func() error) {
		wg.Go(func() {
			if err := serve(); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: %w", name, err)
				}
				mu.Unlock()
				cancel() // one front failing stops the others
			}
		})
	}
	ev := log.Info().Str("id", key.ID().String()).Str("relay", relay.String())
	httpHandler := &gateway.HTTP{Domain: g.domain, Dialer: dialer, Limiter: lim, Log: log}
	for _, f := range fronts {
		if f.ln == nil {
			continue
		}
		ev = ev.Str(f.name, f.ln.Addr().String())
		switch f.name {
		case "socks":
			s := &gateway.SOCKS{Dialer: dialer, Limiter: lim, Log: log}
			run(f.name, func() error { return s.Serve(ctx, f.ln) })
		case "http":
			run(f.name, func() error { return httpHandler.Serve(ctx, f.ln, nil) })
		case "https":
			run(f.name, func() error { return httpHandler.Serve(ctx, f.ln, g.tls) })
		}
	}
	if g.domain != "" {
		ev = ev.Str("domain", g.domain)
	}
	ev.Float64("rate_conn", g.limits.ConnRate).Int("burst", g.limits.ConnBurst).
		Int("max_streams", g.limits.MaxStreams).Int("max_total", g.limits.MaxTotal).Msg("gateway listening")
	wg.Wait()
	log.Info().Msg("gateway stopped")
	if firstErr != nil && !errors.Is(firstErr, context.Canceled) {
		return firstErr
	}
	return nil
}

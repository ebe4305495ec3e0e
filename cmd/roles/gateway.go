package roles

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net"
	"sync"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles/metrics"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/gateway"
	"github.com/tunnel-dev/tunnel/transport"
)

// GatewayConfig is `tunnel gateway`: a shared public gateway to devices'
// public ports. At least one of SOCKS, HTTP and HTTPS is set.
type GatewayConfig struct {
	// Key is the key the gateway dials devices with: its own
	// (gateway.LoadOrCreateKey, gateway.key in Home), never the node key
	// of a person's home, which devices may list in -private or a fleet
	// may have certified — the gateway would lend it to every stranger.
	Key    *identity.Key
	Home   string // the status socket
	Relays []resolver.RelayAddr
	Path   transport.PathMode
	// SOCKS, HTTP and HTTPS are the TCP addresses of the fronts; "" for
	// none.
	SOCKS, HTTP, HTTPS string
	// Domain is the domain whose subdomains name devices (CheckDomain'd);
	// required for HTTP and HTTPS.
	Domain string
	// CertFile and KeyFile hold the PEM certificate for *.Domain and its
	// key, for HTTPS; Check loads them into TLS. TLS may be given instead.
	CertFile, KeyFile string
	TLS               *tls.Config
	Limits            gateway.Limits
	certs             *gateway.CertFile // when TLS came from CertFile and KeyFile
	// Metrics, if set, is given the gateway's counters.
	Metrics *metrics.Collector
	Log     zerolog.Logger
}

// Check reports what is wrong with c, before anything starts; it
// normalizes Domain (gateway.CheckDomain), loads the certificate files into
// TLS, and fills Limits.ConnBurst when it is zero (twice ConnRate).
func (c *GatewayConfig) Check() error {
	if c.SOCKS == "" && c.HTTP == "" && c.HTTPS == "" {
		return errors.New("gateway serves nothing: give --socks, --http or --https")
	}
	for _, f := range []struct{ name, v string }{{"--socks", c.SOCKS}, {"--http", c.HTTP}, {"--https", c.HTTPS}} {
		if f.v == "" {
			continue
		}
		if err := CheckHostPort(f.name, f.v); err != nil {
			return err
		}
	}
	if c.Domain != "" {
		dom, err := gateway.CheckDomain(c.Domain)
		if err != nil {
			return fmt.Errorf("--domain: %v", err)
		}
		c.Domain = dom
	} else if c.HTTP != "" || c.HTTPS != "" {
		return errors.New("--http and --https need --domain (devices are <device-id>.DOMAIN)")
	}
	files := c.CertFile != "" || c.KeyFile != ""
	switch {
	case c.HTTPS != "" && c.TLS == nil && (c.CertFile == "" || c.KeyFile == ""):
		return fmt.Errorf("--https needs both --tls-cert and --tls-key (a certificate for *.%s)", c.Domain)
	case c.HTTPS == "" && (files || c.TLS != nil):
		return errors.New("--tls-cert and --tls-key are used only with --https")
	case c.HTTPS != "" && files:
		certs, err := gateway.LoadCertFile(c.CertFile, c.KeyFile)
		if err != nil {
			return fmt.Errorf("--tls-cert, --tls-key: %v", err)
		}
		c.certs, c.TLS = certs, certs.TLSConfig()
	}
	l := &c.Limits
	if !(l.ConnRate > 0) || math.IsInf(l.ConnRate, 0) {
		return fmt.Errorf("--rate-conn %v: want a number of connections per second above 0", l.ConnRate)
	}
	if l.ConnBurst == 0 {
		l.ConnBurst = max(1, int(math.Ceil(2*l.ConnRate)))
	}
	if l.MaxStreams < 1 {
		return fmt.Errorf("--max-streams %d: want at least 1", l.MaxStreams)
	}
	if l.MaxTotal < 1 {
		return fmt.Errorf("--max-total %d: want at least 1", l.MaxTotal)
	}
	return nil
}

// leaf is the certificate the HTTPS front presents; nil if none or not
// known.
func (c *GatewayConfig) leaf() *x509.Certificate {
	switch {
	case c.certs != nil:
		return c.certs.Leaf()
	case c.TLS != nil && len(c.TLS.Certificates) > 0:
		return c.TLS.Certificates[0].Leaf
	}
	return nil
}

// warnCertNames warns of a certificate that does not cover device names:
// a mistake an operator wants to hear about, but not a reason to refuse
// to run.
func (c *GatewayConfig) warnCertNames(leaf *x509.Certificate) {
	if leaf != nil && leaf.VerifyHostname(c.Key.ID().String()+"-8080."+c.Domain) != nil {
		c.Log.Warn().Strs("names", leaf.DNSNames).Str("want", "*."+c.Domain).
			Msg("the TLS certificate does not cover <device-id>." + c.Domain)
	}
}

// ErrNoCertFiles is ReloadTLS's answer when the certificate did not come
// from files.
var ErrNoCertFiles = errors.New("the HTTPS certificate does not come from --tls-cert and --tls-key files")

// ReloadTLS loads the certificate and key files again: HTTPS handshakes
// from then on present the new certificate, connections made before keep
// theirs. If the files do not load, the certificate in use stays and the
// error says why.
func (g *Gateway) ReloadTLS() error {
	if g.cfg.certs == nil {
		return ErrNoCertFiles
	}
	if err := g.cfg.certs.Reload(); err != nil {
		return err
	}
	g.cfg.warnCertNames(g.cfg.certs.Leaf())
	return nil
}

// TLSLeaf is the certificate the HTTPS front presents; nil if none.
func (g *Gateway) TLSLeaf() *x509.Certificate { return g.cfg.leaf() }

// Gateway is a running public gateway.
type Gateway struct {
	Node  *Node
	cfg   GatewayConfig
	addrs map[string]net.Addr
	done  chan struct{}
	err   error
}

// StartGateway listens on every front first (a taken port fails before
// anything starts), starts the node and serves until ctx ends or a front
// fails; one front failing stops the others.
func StartGateway(ctx context.Context, cfg GatewayConfig) (*Gateway, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	type front struct {
		name, addr string
		ln         net.Listener
	}
	fronts := []*front{{name: "socks", addr: cfg.SOCKS}, {name: "http", addr: cfg.HTTP}, {name: "https", addr: cfg.HTTPS}}
	closeAll := func() {
		for _, f := range fronts {
			if f.ln != nil {
				f.ln.Close()
			}
		}
	}
	for _, f := range fronts {
		if f.addr == "" {
			continue
		}
		var err error
		if f.ln, err = net.Listen("tcp", f.addr); err != nil {
			closeAll()
			return nil, fmt.Errorf("listen for %s on %s: %w", f.name, f.addr, err)
		}
	}
	cfg.warnCertNames(cfg.leaf())
	// No Credentials: a public gateway must never present a fleet
	// membership, or strangers would inherit it.
	n, err := StartNode(ctx, NodeConfig{Key: cfg.Key, Relays: cfg.Relays, Path: cfg.Path, Log: cfg.Log})
	if err != nil {
		closeAll()
		return nil, err
	}
	stopStatus := serveControl(ctx, cfg.Home, "gateway", n, cfg.Log)
	g := &Gateway{Node: n, cfg: cfg, addrs: make(map[string]net.Addr), done: make(chan struct{})}

	lim := gateway.NewLimiter(cfg.Limits)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var mu sync.Mutex
	run := func(name string, serve func() error) {
		wg.Go(func() {
			if err := serve(); err != nil {
				mu.Lock()
				if g.err == nil && !errors.Is(err, context.Canceled) {
					g.err = fmt.Errorf("%s: %w", name, err)
				}
				mu.Unlock()
				cancel() // one front failing stops the others
			}
		})
	}
	ev := cfg.Log.Info().Str("id", cfg.Key.ID().String()).Str("relay", resolver.RelayListString(cfg.Relays))
	httpHandler := &gateway.HTTP{Domain: cfg.Domain, Dialer: n.Dialer, Limiter: lim, Log: cfg.Log}
	cfg.Metrics.AddNode(n.Transport, n.Dialer)
	if cfg.HTTP != "" || cfg.HTTPS != "" {
		cfg.Metrics.AddGateway(httpHandler, lim)
	} else {
		cfg.Metrics.AddGateway(nil, lim)
	}
	for _, f := range fronts {
		if f.ln == nil {
			continue
		}
		g.addrs[f.name] = f.ln.Addr()
		ev = ev.Str(f.name, f.ln.Addr().String())
		switch f.name {
		case "socks":
			s := &gateway.SOCKS{Dialer: n.Dialer, Limiter: lim, Log: cfg.Log}
			run(f.name, func() error { return s.Serve(ctx, f.ln) })
		case "http":
			run(f.name, func() error { return httpHandler.Serve(ctx, f.ln, nil) })
		case "https":
			run(f.name, func() error { return httpHandler.Serve(ctx, f.ln, cfg.TLS) })
		}
	}
	if cfg.Domain != "" {
		ev = ev.Str("domain", cfg.Domain)
	}
	ev.Float64("rate_conn", cfg.Limits.ConnRate).Int("burst", cfg.Limits.ConnBurst).
		Int("max_streams", cfg.Limits.MaxStreams).Int("max_total", cfg.Limits.MaxTotal).Msg("gateway listening")
	go func() {
		wg.Wait()
		cancel()
		stopStatus()
		n.Close()
		cfg.Log.Info().Msg("gateway stopped")
		close(g.done)
	}()
	return g, nil
}

// Addr is the address of front "socks", "http" or "https"; nil if it
// does not run.
func (g *Gateway) Addr(front string) net.Addr { return g.addrs[front] }

// Wait returns once the gateway has stopped, with the first front's
// failure if one failed.
func (g *Gateway) Wait() error {
	<-g.done
	return g.err
}

package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles/metrics"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/resolver/registry"
	"github.com/tunnel-dev/tunnel/transport"
)

// RelayConfig is a rendezvous node.
type RelayConfig struct {
	Key    *identity.Key
	Listen string // UDP HOST:PORT
	// Registry is where presence is kept: "" or "memory" (this node
	// alone), or redis://[USER:PASSWORD@]HOST:PORT/DB (rediss://… for
	// TLS), shared by several nodes. It may hold a password: it is only
	// ever printed through registry.RedactURL.
	Registry string
	// RegistryCA, with a rediss:// Registry, is a PEM file of the CAs
	// trusted for Redis's certificate instead of the system's roots.
	RegistryCA string
	// Advertise is the HOST:PORT other nodes' clients reach this node at;
	// required with a Redis registry, refused without.
	Advertise string
	// Presence, if set, keeps presence instead of Registry's: for a
	// backend of one's own (the tests use one that lies).
	Presence registry.Presence
	// Limits bound what strangers may make the node spend; zero fields
	// take registry.DefaultLimits.
	Limits registry.Limits
	// Metrics, if set, is given the node's counters.
	Metrics *metrics.Collector
	Log     zerolog.Logger
}

// Check reports what is wrong with c, before anything starts.
func (c RelayConfig) Check() error {
	if c.shared() {
		if !strings.HasPrefix(c.Registry, "redis://") && !strings.HasPrefix(c.Registry, "rediss://") {
			return fmt.Errorf("--registry %q: want memory, redis://[USER:PASSWORD@]HOST:PORT/DB or rediss://… (TLS)", registry.RedactURL(c.Registry))
		}
		if err := (registry.RedisConfig{URL: c.Registry}).Check(); err != nil {
			return fmt.Errorf("--registry %w", err)
		}
		if c.RegistryCA != "" {
			if err := (registry.RedisConfig{URL: c.Registry, CAFile: c.RegistryCA}).Check(); err != nil {
				return fmt.Errorf("--registry-ca: %w", err)
			}
		}
		if c.Advertise == "" {
			return fmt.Errorf("--registry %s needs --advertise HOST:PORT (the address clients of other nodes reach this node at)", registry.RedactURL(c.Registry))
		}
		return CheckHostPort("--advertise", c.Advertise)
	}
	if c.RegistryCA != "" {
		return errors.New("--registry-ca is for a rediss:// registry (--registry rediss://…)")
	}
	if c.Advertise != "" {
		return errors.New("--advertise is for nodes sharing a registry (--registry redis://…)")
	}
	return nil
}

func (c RelayConfig) shared() bool { return c.Registry != "" && c.Registry != "memory" }

// Relay is a running rendezvous node.
type Relay struct {
	key    *identity.Key
	relay  *transport.Relay
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// StartRelay opens the node's socket and serves until ctx ends.
func StartRelay(ctx context.Context, cfg RelayConfig) (*Relay, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	var presence registry.Presence = registry.NewMemoryPresence()
	var shared *registry.RedisPresence
	switch {
	case cfg.Presence != nil:
		presence = cfg.Presence
	case cfg.shared():
		p, err := registry.NewRedisPresence(registry.RedisConfig{URL: cfg.Registry, CAFile: cfg.RegistryCA},
			cfg.Key.ID(), cfg.Advertise, cfg.Log.With().Str("role", "registry").Logger())
		if err != nil {
			return nil, err
		}
		presence, shared = p, p
	}
	tr, err := transport.ListenRelay(cfg.Listen)
	if err != nil {
		if shared != nil {
			shared.Close()
		}
		return nil, err
	}
	srv := &registry.Server{Key: cfg.Key, Relay: tr, Presence: presence, Limits: cfg.Limits,
		Log: cfg.Log.With().Str("role", "relay").Logger()}
	cfg.Metrics.AddRelay(srv, tr)
	ctx, cancel := context.WithCancel(ctx)
	r := &Relay{key: cfg.Key, relay: tr, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	if shared != nil {
		wg.Go(func() { shared.Run(ctx, registry.RefreshInterval) })
	}
	wg.Go(func() { trimEvery(ctx, []trimGauge{{srv.Stats.Closed.Load, relayTrim}}, debug.FreeOSMemory) })
	go func() {
		r.err = srv.Serve(ctx)
		cancel()
		wg.Wait()
		tr.Close()
		if shared != nil {
			shared.Close()
		}
		close(r.done)
	}()
	cfg.Log.Info().Str("id", cfg.Key.ID().String()).Str("listen", tr.Socket().LocalAddr().String()).
		Str("relay_addr", cfg.Key.ID().String()+"@"+cfg.Listen).Msg("relay listening")
	if shared != nil {
		cfg.Log.Info().Str("registry", registry.RedactURL(cfg.Registry)).Str("advertise", cfg.Key.ID().String()+"@"+cfg.Advertise).
			Msg("presence shared in redis")
	}
	return r, nil
}

// Addr is the address a process on this machine dials the node at, with
// its ID: the listening address, loopback if it listens on all addresses.
func (r *Relay) Addr() resolver.RelayAddr {
	ap := r.relay.Socket().LocalAddr()
	host := ap.Addr().String()
	if ap.Addr().IsUnspecified() {
		host = "127.0.0.1"
	}
	return resolver.RelayAddr{ID: r.key.ID(), HostPort: net.JoinHostPort(host, fmt.Sprint(ap.Port()))}
}

// Listen is the address the node listens on.
func (r *Relay) Listen() netip.AddrPort { return r.relay.Socket().LocalAddr() }

// Attached is the number of nodes registered here.
func (r *Relay) Attached() int { return r.relay.Attached() }

// Wait returns when the node has stopped (its context ended, or it failed).
func (r *Relay) Wait() error {
	<-r.done
	return r.err
}

// Stop stops the node and waits for it.
func (r *Relay) Stop() error {
	r.cancel()
	return r.Wait()
}

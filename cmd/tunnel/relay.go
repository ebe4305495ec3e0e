package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
)

func relayCommand() *cli.Command {
	return &cli.Command{
		Name:  "relay",
		Usage: "run a rendezvous node: the registry of who is online and the relay of last resort",
		Description: `Devices register here by proving their key; clients look devices up here;
end-to-end packets between them cross this node as opaque bytes it can
neither read nor forge. Give devices and clients ID@HOST:PORT (the ID is
'tunnel id' with this node's --home) so they check they reached this node.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Value: "0.0.0.0:7443", EnvVars: []string{"TUNNEL_RELAY_LISTEN"},
				Usage: "UDP address to serve on"},
			&cli.StringFlag{Name: "registry", Value: "memory", EnvVars: []string{"TUNNEL_REGISTRY"},
				Usage: "where presence is kept: memory (this node alone) or redis://HOST:PORT/DB, shared by several nodes"},
			&cli.StringFlag{Name: "advertise", EnvVars: []string{"TUNNEL_ADVERTISE"},
				Usage: "HOST:PORT other nodes' clients reach this node at (required with a redis registry)"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("relay takes no arguments, got %q", c.Args().First())
			}
			if err := checkHostPort("--listen", c.String("listen")); err != nil {
				return err
			}
			reg, adv := c.String("registry"), c.String("advertise")
			shared := reg != "memory" && reg != ""
			if shared {
				if !strings.HasPrefix(reg, "redis://") {
					return usagef("--registry %q: want memory or redis://HOST:PORT/DB", reg)
				}
				if _, err := redis.ParseURL(reg); err != nil {
					return usagef("--registry %q: %v", reg, err)
				}
				if adv == "" {
					return usagef("--registry %s needs --advertise HOST:PORT (the address clients of other nodes reach this node at)", reg)
				}
			} else if adv != "" {
				return usagef("--advertise is for nodes sharing a registry (--registry redis://…)")
			}
			if adv != "" {
				if err := checkHostPort("--advertise", adv); err != nil {
					return err
				}
			}
			log, key, err := loggerAndKey(c)
			if err != nil {
				return err
			}
			// A relay's memory is its idle devices' connection state, and
			// its packet path allocates nothing, so collecting garbage more
			// often costs little CPU and saves the heap headroom Go keeps
			// by default (GOGC=100 doubles the live heap). GOGC overrides.
			if os.Getenv("GOGC") == "" {
				debug.SetGCPercent(relayGCPercent)
			}
			if !shared {
				rn, err := startRelay(c.Context, key, c.String("listen"), log)
				if err != nil {
					return err
				}
				return rn.wait()
			}
			p, err := resolver.NewRedisPresence(reg, key.ID(), adv, log.With().Str("role", "registry").Logger())
			if err != nil {
				return usageError{err}
			}
			defer p.Close()
			rn, err := startRelayPresence(c.Context, key, c.String("listen"), p, log)
			if err != nil {
				return err
			}
			log.Info().Str("registry", reg).Str("advertise", key.ID().String()+"@"+adv).Msg("presence shared in redis")
			var wg sync.WaitGroup
			ctx, cancel := context.WithCancel(c.Context)
			wg.Go(func() { p.Run(ctx, resolver.RefreshInterval) })
			err = rn.wait()
			cancel()
			wg.Wait()
			return err
		},
	}
}

// relayGCPercent is the relay's GOGC.
const relayGCPercent = 25

// relayNode is a running rendezvous node.
type relayNode struct {
	relay  *transport.Relay
	cancel context.CancelFunc
	done   chan error
}

// startRelay opens the relay's socket and serves until ctx ends.
func startRelay(ctx context.Context, key *identity.Key, listen string, log zerolog.Logger) (*relayNode, error) {
	return startRelayPresence(ctx, key, listen, resolver.NewMemoryPresence(), log)
}

// startRelayPresence is startRelay with presence kept in p.
func startRelayPresence(ctx context.Context, key *identity.Key, listen string, p resolver.Presence, log zerolog.Logger) (*relayNode, error) {
	relay, err := transport.ListenRelay(listen)
	if err != nil {
		return nil, err
	}
	srv := &resolver.Server{Key: key, Relay: relay, Presence: p, Log: log.With().Str("role", "relay").Logger()}
	ctx, cancel := context.WithCancel(ctx)
	rn := &relayNode{relay: relay, cancel: cancel, done: make(chan error, 1)}
	go func() {
		err := srv.Serve(ctx)
		relay.Close()
		rn.done <- err
	}()
	log.Info().Str("id", key.ID().String()).Str("listen", relay.Socket().LocalAddr().String()).
		Str("relay_addr", key.ID().String()+"@"+listen).Msg("relay listening")
	return rn, nil
}

// wait returns when the node stops (its context ended, or it failed).
func (rn *relayNode) wait() error { return <-rn.done }

// stop stops the node and waits for it.
func (rn *relayNode) stop() error {
	rn.cancel()
	return rn.wait()
}

// dialAddr is the address a process on this machine uses to reach the
// relay listening on listen.
func (rn *relayNode) dialAddr() string {
	ap := rn.relay.Socket().LocalAddr()
	host := ap.Addr().String()
	if ap.Addr().IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, fmt.Sprint(ap.Port()))
}

// checkHostPort validates a HOST:PORT flag.
func checkHostPort(flag, v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return usagef("%s %q: want HOST:PORT: %v", flag, v, err)
	}
	if strings.ContainsAny(host, " /") {
		return usagef("%s %q: bad host", flag, v)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return usagef("%s %q: bad port %q", flag, v, port)
	}
	return nil
}

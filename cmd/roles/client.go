package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// ClientConfig is `tunnel socksd`: the SOCKS5 front door (with its HTTP
// front: PAC file and CONNECT) on this machine, for its user.
type ClientConfig struct {
	Key  *identity.Key
	Home string // fleet credentials and the status socket
	// Listen is the SOCKS TCP address.
	Listen string
	// Relays are the rendezvous nodes; none: a node is embedded,
	// listening on RelayListen.
	Relays      []resolver.RelayAddr
	RelayListen string
	Path        transport.PathMode
	// FallbackDirect dials non-.tunnel hosts directly; refused unless
	// Listen is a loopback address (socksd is never an open proxy).
	FallbackDirect bool
	Log            zerolog.Logger
}

// Check reports what is wrong with c, before anything starts.
func (c ClientConfig) Check() error {
	if err := CheckHostPort("--listen", c.Listen); err != nil {
		return err
	}
	if c.FallbackDirect && !IsLoopback(c.Listen) {
		return fmt.Errorf("--fallback direct would make %s an open proxy: it is allowed only on a loopback --listen", c.Listen)
	}
	if len(c.Relays) == 0 {
		return CheckHostPort("--relay-listen", c.RelayListen)
	}
	return nil
}

// Client is a running socksd.
type Client struct {
	Node  *Node
	Relay *Relay // the embedded rendezvous node, if any
	ln    net.Listener
	done  chan struct{}
	err   error
}

// StartClient listens, starts the node (and the embedded rendezvous node
// when no relay is given) and serves SOCKS until ctx ends.
func StartClient(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen for SOCKS clients on %s: %w", cfg.Listen, err)
	}
	c := &Client{ln: ln, done: make(chan struct{})}
	relays := cfg.Relays
	if len(relays) == 0 {
		if c.Relay, err = StartRelay(ctx, RelayConfig{Key: cfg.Key, Listen: cfg.RelayListen, Log: cfg.Log}); err != nil {
			ln.Close()
			return nil, err
		}
		relays = []resolver.RelayAddr{c.Relay.Addr()}
	}
	nc := NodeConfig{Key: cfg.Key, Relays: relays, Path: cfg.Path, Credentials: HomeCredentials(cfg.Home), Log: cfg.Log}
	fallback := "reject"
	if cfg.FallbackDirect {
		nc.Fallback, fallback = dialer.DirectFallback, "direct"
	}
	if c.Node, err = StartNode(ctx, nc); err != nil {
		ln.Close()
		if c.Relay != nil {
			c.Relay.Stop()
		}
		return nil, err
	}
	stopStatus := serveStatus(ctx, cfg.Home, "socksd", c.Node, cfg.Log)
	cfg.Log.Info().Str("listen", ln.Addr().String()).Str("relay", resolver.RelayListString(relays)).
		Str("id", cfg.Key.ID().String()).Str("fallback", fallback).Msg("socksd listening")
	front := &socks.HTTPFront{Dial: c.Node.Dialer.Dial, Log: cfg.Log, Listen: ln.Addr().String()}
	srv := &socks.Server{Dial: c.Node.Dialer.Dial, Log: cfg.Log, Other: front.ServeConn}
	go func() {
		c.err = srv.Serve(ctx, ln)
		stopStatus()
		c.Node.Close()
		if c.Relay != nil {
			c.err = errors.Join(c.err, c.Relay.Stop())
		}
		close(c.done)
	}()
	return c, nil
}

// Addr is the SOCKS address.
func (c *Client) Addr() net.Addr { return c.ln.Addr() }

// Wait returns once the client has stopped: its context ended, or its
// listener failed.
func (c *Client) Wait() error {
	<-c.done
	return c.err
}

// IsLoopback reports whether HOST:PORT names a loopback address.
func IsLoopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles/metrics"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/socks/forward"
	"github.com/tunnel-dev/tunnel/transport"
)

// ClientConfig is `tunnel socksd`: the SOCKS5 front door (with its HTTP
// front: PAC file and CONNECT) on this machine, for its user.
type ClientConfig struct {
	Key  *identity.Key
	Home string // fleet credentials, names and the status socket
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
	// Auth is the password file (socks.LoadPasswords), read once at
	// start: if set, every SOCKS and HTTP CONNECT client must give a
	// username and password it lists. Required unless Listen is loopback:
	// whoever reaches socksd dials with this node's key and fleet
	// credentials.
	Auth string
	// AllowLocalUsers serves the loopback clients of every local user;
	// otherwise, on Linux and without Auth, only those of the user socksd
	// runs as, and root's.
	AllowLocalUsers bool
	// Binds are local forwards (--bind): each accepted connection becomes
	// a stream to its target, dialed as SOCKS clients' are. Their ports
	// are bound before socksd is up.
	Binds []forward.Spec
	// AllowRemote lets a bind listen beyond loopback; whoever reaches it
	// uses this node's key and fleet credentials, with no password.
	AllowRemote bool
	// Metrics, if set, is given the counters of socksd's node, door and
	// embedded rendezvous node.
	Metrics *metrics.Collector
	Log     zerolog.Logger
}

// Check reports what is wrong with c, before anything starts; it reads
// the password file to check it.
func (c ClientConfig) Check() error {
	_, err := c.check()
	return err
}

// check is Check, returning the password file it read (nil without Auth).
func (c ClientConfig) check() (*socks.Passwords, error) {
	if err := CheckHostPort("--listen", c.Listen); err != nil {
		return nil, err
	}
	if c.FallbackDirect && !IsLoopback(c.Listen) {
		return nil, fmt.Errorf("--fallback direct would make %s an open proxy: it is allowed only on a loopback --listen", c.Listen)
	}
	if c.Auth == "" && !IsLoopback(c.Listen) {
		return nil, fmt.Errorf("--listen %s is not loopback: whoever reaches it would use this node's key and fleet credentials; "+
			"require a password with --auth FILE (make one with 'tunnel socksd passwd USER')", c.Listen)
	}
	var pw *socks.Passwords
	if c.Auth != "" {
		var err error
		if pw, err = socks.LoadPasswords(c.Auth); err != nil {
			return nil, fmt.Errorf("--auth: %w", err)
		}
	}
	for _, b := range c.Binds {
		if err := b.CheckListen(c.AllowRemote); err != nil {
			return nil, err
		}
	}
	if len(c.Relays) == 0 {
		if err := CheckHostPort("--relay-listen", c.RelayListen); err != nil {
			return nil, err
		}
	}
	return pw, nil
}

// Client is a running socksd.
type Client struct {
	Node  *Node
	Relay *Relay // the embedded rendezvous node, if any
	ln    net.Listener
	binds []*forward.Forwarder
	done  chan struct{}
	err   error
}

// StartClient listens, starts the node (and the embedded rendezvous node
// when no relay is given) and serves SOCKS until ctx ends.
func StartClient(ctx context.Context, cfg ClientConfig) (*Client, error) {
	pw, err := cfg.check()
	if err != nil {
		return nil, err
	}
	var auth *socks.Authenticator
	if pw != nil {
		auth = socks.NewAuthenticator(pw, socks.AuthLimits{}, cfg.Log)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen for SOCKS clients on %s: %w", cfg.Listen, err)
	}
	c := &Client{ln: ln, done: make(chan struct{})}
	// Every bind's port is taken before anything starts, so a port in use
	// fails socksd at start with nothing left running. Their streams are
	// dialed by the node started below, before any is served.
	dial := func(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
		return c.Node.Dialer.Dial(ctx, host, port)
	}
	for _, spec := range cfg.Binds {
		f, err := forward.Listen(ctx, spec, forward.Config{Dial: dial, Log: cfg.Log, AllowRemote: cfg.AllowRemote})
		if err != nil {
			c.closeBinds()
			ln.Close()
			return nil, err
		}
		c.binds = append(c.binds, f)
	}
	relays := cfg.Relays
	if len(relays) == 0 {
		if c.Relay, err = StartRelay(ctx, RelayConfig{Key: cfg.Key, Listen: cfg.RelayListen, Metrics: cfg.Metrics, Log: cfg.Log}); err != nil {
			c.closeBinds()
			ln.Close()
			return nil, err
		}
		relays = []resolver.RelayAddr{c.Relay.Addr()}
	}
	nc := NodeConfig{Key: cfg.Key, Relays: relays, Path: cfg.Path, Credentials: HomeCredentials(cfg.Home),
		Names: HomeNames(cfg.Home, cfg.Log), Log: cfg.Log}
	if c.Relay != nil {
		nc.LocalRelay = c.Relay.Listen()
	}
	fallback := "reject"
	if cfg.FallbackDirect {
		nc.Fallback, fallback = dialer.DirectFallback, "direct"
	}
	if c.Node, err = StartNode(ctx, nc); err != nil {
		c.closeBinds()
		ln.Close()
		if c.Relay != nil {
			c.Relay.Stop()
		}
		return nil, err
	}
	stopStatus := serveControl(ctx, cfg.Home, "socksd", c.Node, cfg.Log)
	// Who may come in: with a password file, whoever gives a password of
	// it; without (loopback only), this user's and root's processes,
	// unless AllowLocalUsers (and where the check is made: Linux).
	door := "password"
	var admit func(net.Conn) error
	owner := socks.NewOwnerOnly(cfg.Log) // nil where users cannot be told apart
	if auth == nil {
		door = "every local user"
		if owner != nil && !cfg.AllowLocalUsers {
			door, admit = "this user and root", owner.Admit
		}
	}
	preAuth := socks.NewPreAuth(socks.DefaultPreAuthPerSource, socks.DefaultPreAuthTotal, cfg.Log)
	if owner != nil {
		preAuth.KeyLocalByUser(owner) // one local user cannot hold another's slots
	}
	cfg.Metrics.AddNode(c.Node.Transport, c.Node.Dialer)
	cfg.Metrics.AddSOCKS(preAuth, auth, c.binds)
	cfg.Log.Info().Str("listen", ln.Addr().String()).Str("relay", resolver.RelayListString(relays)).
		Str("id", cfg.Key.ID().String()).Str("fallback", fallback).Str("clients", door).Msg("socksd listening")
	front := &socks.HTTPFront{Dial: c.Node.Dialer.Dial, Log: cfg.Log, Listen: ln.Addr().String(), Auth: auth, Admit: admit}
	srv := &socks.Server{Dial: c.Node.Dialer.Dial, Log: cfg.Log, Other: front.ServeConn, Auth: auth, Admit: admit,
		PreAuth: preAuth}
	// A listener that fails stops the whole of socksd, not just itself.
	sctx, cancel := context.WithCancel(ctx)
	var binds sync.WaitGroup
	bindErrs := make([]error, len(c.binds))
	for i, f := range c.binds {
		cfg.Log.Info().Str("bind", f.Addr().String()).Str("target", f.Spec().Target()).Msg("bind listening")
		binds.Go(func() {
			bindErrs[i] = f.Serve(sctx)
			cancel()
		})
	}
	go func() {
		c.err = srv.Serve(sctx, ln)
		cancel()
		binds.Wait()
		c.err = errors.Join(append([]error{c.err}, bindErrs...)...)
		stopStatus()
		c.Node.Close()
		if c.Relay != nil {
			c.err = errors.Join(c.err, c.Relay.Stop())
		}
		close(c.done)
	}()
	return c, nil
}

// closeBinds releases the ports of binds never served.
func (c *Client) closeBinds() {
	for _, f := range c.binds {
		f.Close()
	}
}

// Binds are the local forwards, bound.
func (c *Client) Binds() []*forward.Forwarder { return c.binds }

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

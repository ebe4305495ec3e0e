package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/resolver/names"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// NodeConfig is a node: a key, a UDP socket, and the rendezvous nodes it
// registers with. Every role but the relay runs on one.
type NodeConfig struct {
	Key *identity.Key
	// Listen is the node's UDP address; ":0" if empty.
	Listen string
	Relays []resolver.RelayAddr
	// LocalRelay is where the rendezvous node running in this process
	// (socksd's embedded one) listens, if any: the node then knows
	// whether that relay serves other machines (transport.SetLocalRelay).
	LocalRelay netip.AddrPort
	// Publishes registers the node as a device others may look up.
	Publishes bool
	Path      transport.PathMode
	// Credentials returns the node's fleet credential for a fleet, in
	// wire form (HomeCredentials). Nil: the node presents none.
	Credentials func(fleet identity.ID) []byte
	// Names resolves a name that is not an ID (HomeNames); nil: IDs only,
	// as the public gateway must.
	Names func(label string) (identity.ID, bool)
	// Fallback, if set, dials hosts that are not .tunnel names.
	Fallback func(ctx context.Context, host string, port uint16) (transport.HalfConn, error)
	Log      zerolog.Logger
}

// Node is a running node: its transport, the resolver client that keeps it
// registered, and the dialer that reaches devices through it.
type Node struct {
	Transport *transport.Node
	Resolver  *resolver.Client
	Dialer    *dialer.Dialer

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartNode opens the node's socket and keeps it registered until ctx
// ends or Close.
func StartNode(ctx context.Context, cfg NodeConfig) (*Node, error) {
	if len(cfg.Relays) == 0 {
		return nil, errors.New("no rendezvous node given")
	}
	listen := cfg.Listen
	if listen == "" {
		listen = ":0"
	}
	tn, err := transport.NewNode(cfg.Key, listen)
	if err != nil {
		return nil, err
	}
	tn.SetMode(cfg.Path)
	if cfg.LocalRelay.IsValid() {
		tn.SetLocalRelay(cfg.LocalRelay)
	}
	if cfg.Path != transport.PathRelay {
		tn.MapPort() // the router's mapping, a candidate for direct paths
	}
	ctx, cancel := context.WithCancel(ctx)
	n := &Node{Transport: tn, cancel: cancel}
	n.Resolver = resolver.NewClient(tn, resolver.Config{Relays: cfg.Relays, Publishes: cfg.Publishes, Log: cfg.Log})
	n.Dialer = dialer.New(n.Resolver, dialer.Config{Credential: cfg.Credentials, Names: cfg.Names, Fallback: cfg.Fallback, Log: cfg.Log})
	n.wg.Go(func() { _ = n.Resolver.Run(ctx) })
	return n, nil
}

// WaitRegistered waits until the node is registered with a rendezvous
// node.
func (n *Node) WaitRegistered(ctx context.Context) error { return n.Resolver.WaitRegistered(ctx) }

// Close closes the node's device connections, ends its sessions and
// closes its socket.
func (n *Node) Close() {
	n.Dialer.Close()
	n.cancel()
	n.wg.Wait()
	n.Transport.Close()
}

// HomeCredentials is the source of fleet credentials of a node whose home
// is home: those installed there with 'tunnel fleet join'.
func HomeCredentials(home string) func(identity.ID) []byte {
	return func(f identity.ID) []byte {
		c, err := fleet.For(home, f)
		if err != nil {
			return nil
		}
		return c.Wire()
	}
}

// HomeNames is the source of device names of a node whose home is home:
// its pet names and its fleets' imported names ('tunnel name'), re-read
// when they change.
func HomeNames(home string, log zerolog.Logger) func(string) (identity.ID, bool) {
	return names.Open(home, log).Lookup
}

// CheckHostPort checks a HOST:PORT setting; flag names it in the error.
func CheckHostPort(flag, v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%s %q: want HOST:PORT: %v", flag, v, err)
	}
	if strings.ContainsAny(host, " /") {
		return fmt.Errorf("%s %q: bad host", flag, v)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%s %q: bad port %q", flag, v, port)
	}
	return nil
}

package main

import (
	"context"
	"strings"
	"sync"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
)

const defaultRelay = "127.0.0.1:7443"

func relayFlag() cli.Flag {
	return &cli.StringFlag{Name: "relay", EnvVars: []string{"TUNNEL_RELAY"},
		Usage: "rendezvous node, HOST:PORT or ID@HOST:PORT (then its key is checked); several, comma-separated (A,B,...), for nodes sharing a registry: the reachable one answering first is used"}
}

// relayList is --relay: one rendezvous node, or several sharing presence.
type relayList []resolver.RelayAddr

func (l relayList) String() string {
	s := make([]string, len(l))
	for i, a := range l {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// relayAddr parses --relay, falling back to def when it is not set.
func relayAddr(c *cli.Context, def string) (relayList, error) {
	v := c.String("relay")
	if v == "" {
		v = def
	}
	var l relayList
	for _, part := range strings.Split(v, ",") {
		a, err := resolver.ParseRelayAddr(strings.TrimSpace(part))
		if err != nil {
			return nil, usageError{err}
		}
		l = append(l, a)
	}
	return l, nil
}

// node is a running node with its relay connection.
type node struct {
	*transport.Node
	resolver *resolver.Client
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// startNode opens a node's socket and keeps it registered at relay until
// ctx ends.
func startNode(ctx context.Context, key *identity.Key, relay relayList, publishes bool, mode transport.PathMode, log zerolog.Logger) (*node, error) {
	tn, err := transport.NewNode(key, ":0")
	if err != nil {
		return nil, err
	}
	tn.SetMode(mode)
	ctx, cancel := context.WithCancel(ctx)
	n := &node{Node: tn, cancel: cancel}
	n.resolver = &resolver.Client{Node: tn, Relay: relay[0], Publishes: publishes, Log: log}
	if len(relay) > 1 {
		n.resolver.Relays = relay
	}
	n.wg.Go(func() { _ = n.resolver.Run(ctx) })
	return n, nil
}

// close ends the relay connection and closes the socket.
func (n *node) close() {
	n.cancel()
	n.wg.Wait()
	n.Node.Close()
}

// credentials returns the dialer's source of fleet credentials: those
// installed in home with 'tunnel fleet join'.
func credentials(home string) func(identity.ID) []byte {
	return func(f identity.ID) []byte {
		c, err := fleet.For(home, f)
		if err != nil {
			return nil
		}
		return c.Wire()
	}
}

func pathFlag() cli.Flag {
	return &cli.StringFlag{Name: "path", Value: "auto", EnvVars: []string{"TUNNEL_PATH"},
		Usage: "auto (relay first, direct when punched), direct (never relay stream bytes) or relay (never go direct)"}
}

func pathMode(c *cli.Context) (transport.PathMode, error) {
	m, err := transport.ParsePathMode(c.String("path"))
	if err != nil {
		return m, usageError{err}
	}
	return m, nil
}

// loggerAndKey is what every long-running command does once its flags are
// checked: build the logger the global flags ask for, then load (or
// create) the node's key. Flags are checked first so that a usage error
// creates no key.
func loggerAndKey(c *cli.Context) (zerolog.Logger, *identity.Key, error) {
	log, err := newLogger(c, false)
	if err != nil {
		return log, nil, err
	}
	key, err := identity.LoadOrCreate(c.String("home"))
	return log, key, err
}

//go:build linux

package main

// Idle devices in this process: N nodes, each with its own key, UDP socket
// and registration at the relay under test, as `tunnel publish` has (it
// publishes nothing here: an idle device costs the relay only its
// registration). One process instead of N keeps the bench light; the relay
// cannot tell the difference.

import (
	"context"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
)

type idleDevices struct {
	cancel context.CancelFunc
	nodes  []*roles.Node
}

// startIdleDevices starts n devices registering at relay and waits until
// all of them have registered once, or timeout.
func startIdleDevices(n int, relay resolver.RelayAddr, timeout time.Duration) (*idleDevices, error) {
	ctx, cancel := context.WithCancel(context.Background())
	d := &idleDevices{cancel: cancel}
	for range n {
		key, err := identity.Generate()
		if err != nil {
			d.stop()
			return nil, err
		}
		node, err := roles.StartNode(ctx, roles.NodeConfig{Key: key, Listen: "127.0.0.1:0",
			Relays: []resolver.RelayAddr{relay}, Publishes: true, Log: zerolog.Nop()})
		if err != nil {
			d.stop()
			return nil, fmt.Errorf("device node: %w", err)
		}
		d.nodes = append(d.nodes, node)
	}
	wctx, wcancel := context.WithTimeout(ctx, timeout)
	defer wcancel()
	for i, node := range d.nodes {
		if err := node.WaitRegistered(wctx); err != nil {
			d.stop()
			return nil, fmt.Errorf("only %d of %d devices registered within %s", i, n, timeout)
		}
	}
	return d, nil
}

func (d *idleDevices) stop() {
	d.cancel()
	for _, n := range d.nodes {
		n.Close()
	}
}

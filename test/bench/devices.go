package main

// Idle devices in this process: N nodes, each with its own key, UDP socket
// and registration at the relay under test, as `tunnel publish` has (it
// publishes nothing here: an idle device costs the relay only its
// registration). One process instead of N keeps the bench light; the relay
// cannot tell the difference.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
)

type idleDevices struct {
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	nodes      []*transport.Node
	registered atomic.Int64
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
		node, err := transport.NewNode(key, "127.0.0.1:0")
		if err != nil {
			d.stop()
			return nil, fmt.Errorf("device node: %w", err)
		}
		d.nodes = append(d.nodes, node)
		var once sync.Once
		c := &resolver.Client{Node: node, Relay: relay, Publishes: true, Log: zerolog.Nop(),
			OnRegistered: func(string) { once.Do(func() { d.registered.Add(1) }) }}
		d.wg.Go(func() { _ = c.Run(ctx) })
	}
	deadline := time.Now().Add(timeout)
	for d.registered.Load() < int64(n) {
		if time.Now().After(deadline) {
			got := d.registered.Load()
			d.stop()
			return nil, fmt.Errorf("only %d of %d devices registered within %s", got, n, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d, nil
}

func (d *idleDevices) stop() {
	d.cancel()
	d.wg.Wait()
	for _, n := range d.nodes {
		n.Close()
	}
}

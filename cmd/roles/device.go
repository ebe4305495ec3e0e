package roles

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles/metrics"
	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
)

// DeviceConfig is `tunnel publish`: a device agent publishing ports.
type DeviceConfig struct {
	Key    *identity.Key
	Home   string // the status socket; "" for none
	Relays []resolver.RelayAddr
	Ports  []peer.Port
	// Fleet is the fleet whose members may use Protected ports.
	Fleet identity.ID
	Path  transport.PathMode
	// Limits bound what clients cost the agent; zero fields take
	// peer.DefaultLimits.
	Limits peer.Limits
	// Metrics, if set, is given the agent's and the node's counters.
	Metrics *metrics.Collector
	Log     zerolog.Logger
}

// Device is a running device agent.
type Device struct {
	Node  *Node
	agent *peer.Agent
	done  chan struct{}
	err   error
}

// StartDevice starts the node, registered as a device, and the agent
// serving its ports, until ctx ends.
func StartDevice(ctx context.Context, cfg DeviceConfig) (*Device, error) {
	n, err := StartNode(ctx, NodeConfig{Key: cfg.Key, Relays: cfg.Relays, Publishes: true, Path: cfg.Path, Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	stopStatus := func() {}
	if cfg.Home != "" {
		stopStatus = serveControl(ctx, cfg.Home, "publish", n, cfg.Log)
	}
	ev := cfg.Log.Info().Str("id", cfg.Key.ID().String()).Str("name", cfg.Key.ID().String()+".tunnel").
		Str("relay", resolver.RelayListString(cfg.Relays))
	for _, p := range cfg.Ports {
		ev = ev.Str(fmt.Sprintf("port_%d", p.Remote), p.Access.String()+" "+p.Target)
	}
	ev.Msg("publishing")
	agent := &peer.Agent{Node: n.Transport, Ports: cfg.Ports, Fleet: cfg.Fleet, Limits: cfg.Limits, Log: cfg.Log}
	d := &Device{Node: n, agent: agent, done: make(chan struct{})}
	cfg.Metrics.AddNode(n.Transport, nil) // a device dials no streams
	cfg.Metrics.AddAgent(agent)
	go func() {
		d.err = agent.Serve(ctx)
		stopStatus()
		n.Close()
		close(d.done)
	}()
	return d, nil
}

// SetPorts publishes ports instead of those the device publishes now,
// without dropping the streams the new ones still allow
// (peer.Agent.SetPorts); it returns how many streams it ended.
func (d *Device) SetPorts(ports []peer.Port, fleet identity.ID) int {
	return d.agent.SetPorts(ports, fleet)
}

// Wait returns once the device has stopped.
func (d *Device) Wait() error {
	<-d.done
	return d.err
}

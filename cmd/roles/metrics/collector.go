package metrics

import (
	"sync"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/resolver/registry"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/socks/forward"
	"github.com/tunnel-dev/tunnel/socks/gateway"
	"github.com/tunnel-dev/tunnel/transport"
)

// Collector reads the counters of a process's parts at scrape time. A
// role adds its parts as it starts them; one Collector serves a process,
// so that parts of several roles in one process (socksd and its embedded
// rendezvous node) sum into one set of series.
type Collector struct {
	mu       sync.Mutex
	relays   []relayPart
	nodes    []*transport.Node
	dialers  []*dialer.Dialer
	agents   []*peer.Agent
	https    []*gateway.HTTP
	limiters []*gateway.Limiter
	preAuths []*socks.PreAuth
	auths    []*socks.Authenticator
	binds    []*forward.Forwarder
}

type relayPart struct {
	srv *registry.Server
	fwd *transport.Relay
}

// NewCollector returns a Collector of nothing yet.
func NewCollector() *Collector { return &Collector{} }

// AddRelay adds a rendezvous node: its registry server and packet relay.
func (c *Collector) AddRelay(srv *registry.Server, fwd *transport.Relay) {
	c.add(func() { c.relays = append(c.relays, relayPart{srv, fwd}) })
}

// AddNode adds a node's end-to-end connections (tunnel_peers) and its
// probe budget, and its dialer's streams if it has one.
func (c *Collector) AddNode(n *transport.Node, d *dialer.Dialer) {
	c.add(func() {
		c.nodes = append(c.nodes, n)
		if d != nil {
			c.dialers = append(c.dialers, d)
		}
	})
}

// AddAgent adds a device agent's streams and limits.
func (c *Collector) AddAgent(a *peer.Agent) { c.add(func() { c.agents = append(c.agents, a) }) }

// AddGateway adds a public gateway's HTTP front (nil without one) and
// its limiter.
func (c *Collector) AddGateway(h *gateway.HTTP, l *gateway.Limiter) {
	c.add(func() {
		if h != nil {
			c.https = append(c.https, h)
		}
		if l != nil {
			c.limiters = append(c.limiters, l)
		}
	})
}

// AddSOCKS adds socksd's door: its pre-authorization caps, its password
// checks' rate (nil without --auth) and its binds.
func (c *Collector) AddSOCKS(p *socks.PreAuth, a *socks.Authenticator, binds []*forward.Forwarder) {
	c.add(func() {
		if p != nil {
			c.preAuths = append(c.preAuths, p)
		}
		if a != nil {
			c.auths = append(c.auths, a)
		}
		c.binds = append(c.binds, binds...)
	})
}

// add runs f under the lock; a nil Collector adds nothing, so that roles
// call it whether or not metrics are on.
func (c *Collector) add(f func()) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	f()
}

// The caps tunnel_limited_total{what} counts, one per limit that refuses
// strangers (README "Limits").
const (
	LimitRelayConns         = "relay_conns"          // relay --max-conns, --max-conns-per-source
	LimitRelayHandshakes    = "relay_handshake_rate" // relay --handshake-rate: sources asked to prove their address
	LimitRelayLookups       = "relay_lookup_rate"    // relay --lookup-rate
	LimitRelayRegistrations = "relay_registrations"  // relay --max-registrations
	LimitDeviceClients      = "device_clients"       // publish --max-clients
	LimitDeviceUnauthorized = "device_unauthorized"  // publish --max-unauthorized, --max-unauthorized-per-key
	LimitDeviceStreams      = "device_unauthorized_streams"
	LimitProbes             = "probe_budget"         // a node's direct-path probe budget
	LimitGatewayRate        = "gateway_rate"         // gateway --rate-conn
	LimitGatewayStreams     = "gateway_streams"      // gateway --max-streams
	LimitGatewayTotal       = "gateway_total"        // gateway --max-total
	LimitSOCKSPerSource     = "socks_preauth_source" // socksd's 64 not yet authorized per address
	LimitSOCKSTotal         = "socks_preauth_total"  // socksd's 512 not yet authorized in all
	LimitSOCKSAuthRate      = "socks_auth_rate"      // password checks per address
	LimitBindConns          = "bind_conns"           // connections per bind
)

// The series of tunnel's own, described once: Collector.Gather copies
// each and adds its samples. Label names are in alphabetical order, as
// Prometheus's own client printed them.
var (
	famDevices = Family{Name: "tunnel_relay_devices", Type: Gauge,
		Help: "Devices registered at this rendezvous node."}
	famConns = Family{Name: "tunnel_relay_connections", Type: Gauge,
		Help: "Outer QUIC connections open at this rendezvous node (devices on a lease hold none)."}
	famLookups = Family{Name: "tunnel_relay_lookups_total", Type: Counter, Labels: []string{"result"},
		Help: "Lookups this rendezvous node answered, by result."}
	famForwarded = Family{Name: "tunnel_relay_forwarded_bytes_total", Type: Counter,
		Help: "Bytes of relay frames this rendezvous node forwarded between nodes."}
	famRegistryErrors = Family{Name: "tunnel_registry_errors_total", Type: Counter,
		Help: "Failures of the presence backend (the shared Redis registry)."}
	famStreams = Family{Name: "tunnel_streams_total", Type: Counter, Labels: []string{"outcome", "side"},
		Help: "Streams by side (client: opened by this node; device: served by it) and outcome, counted when the outcome is known."}
	famStreamBytes = Family{Name: "tunnel_stream_bytes_total", Type: Counter, Labels: []string{"direction", "side"},
		Help: "Payload bytes of streams by side and direction (up: from the client towards the device's service)."}
	famPeers = Family{Name: "tunnel_peers", Type: Gauge, Labels: []string{"path"},
		Help: "End-to-end connections of this node, by the path they take now."}
	famGatewayRequests = Family{Name: "tunnel_gateway_requests_total", Type: Counter, Labels: []string{"code"},
		Help: "HTTP(S) requests the public gateway answered, by status code."}
	famLimited = Family{Name: "tunnel_limited_total", Type: Counter, Labels: []string{"what"},
		Help: "What a limit refused, by the limit."}
)

// tunnelFamilies are all of them, for a caller that needs every name and
// label a process may export.
var tunnelFamilies = []*Family{&famDevices, &famConns, &famLookups, &famForwarded, &famRegistryErrors,
	&famStreams, &famStreamBytes, &famPeers, &famGatewayRequests, &famLimited}

// Gather returns every series of the parts added, summed over parts of
// one kind, zeros included, so that a rate has a start. A family whose
// parts were never added is left out.
func (c *Collector) Gather() []Family {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Family
	emit := func(f *Family) {
		if len(f.Samples) > 0 {
			out = append(out, *f)
		}
	}
	limited := map[string]uint64{}
	if len(c.relays) > 0 {
		var devices, conns int64
		var fwd, errs uint64
		var lookups [len(registry.Stats{}.Lookups)]uint64
		for _, r := range c.relays {
			devices += r.srv.Stats.Devices.Load()
			conns += r.srv.Stats.Conns.Load()
			errs += r.srv.Stats.Errors.Load()
			fwd += r.fwd.ForwardedBytes.Load()
			for i := range lookups {
				lookups[i] += r.srv.Stats.Lookups[i].Load()
			}
			limited[LimitRelayConns] += r.srv.Refused.Conns.Load()
			limited[LimitRelayHandshakes] += r.srv.Refused.Validated.Load()
			limited[LimitRelayLookups] += r.srv.Refused.Lookups.Load()
			limited[LimitRelayRegistrations] += r.srv.Refused.Registrations.Load()
		}
		f := famDevices
		f.add(float64(devices))
		emit(&f)
		f = famConns
		f.add(float64(conns))
		emit(&f)
		f = famForwarded
		f.add(float64(fwd))
		emit(&f)
		f = famRegistryErrors
		f.add(float64(errs))
		emit(&f)
		f = famLookups
		for _, res := range registry.LookupResults() {
			f.add(float64(lookups[res]), res.String())
		}
		emit(&f)
	}
	if len(c.nodes) > 0 {
		var direct, relayed int
		for _, n := range c.nodes {
			d, r := n.PathCounts()
			direct, relayed = direct+d, relayed+r
			limited[LimitProbes] += n.ProbesDeferred()
		}
		f := famPeers
		f.add(float64(direct), "direct")
		f.add(float64(relayed), "relayed")
		emit(&f)
	}
	streams, streamBytes := famStreams, famStreamBytes
	if len(c.dialers) > 0 {
		var up, down, aborted uint64
		outcomes := dialer.Outcomes()
		counts := make([]uint64, len(outcomes))
		for _, d := range c.dialers {
			up += d.Stats.Sent.Load()
			down += d.Stats.Received.Load()
			aborted += d.Stats.Aborted.Load()
			for i, o := range outcomes {
				counts[i] += d.Stats.Outcomes[o].Load()
			}
		}
		for i, o := range outcomes {
			streams.add(float64(counts[i]), o.String(), "client")
		}
		streams.add(float64(aborted), "aborted", "client")
		streamBytes.add(float64(up), "up", "client")
		streamBytes.add(float64(down), "down", "client")
	}
	if len(c.agents) > 0 {
		var up, down uint64
		outcomes := peer.Outcomes()
		counts := make([]uint64, len(outcomes))
		for _, a := range c.agents {
			up += a.Stats.FromClients.Load()
			down += a.Stats.ToClients.Load()
			for i, o := range outcomes {
				counts[i] += a.Stats.Streams[o].Load()
			}
			limited[LimitDeviceClients] += a.Refused.Conns.Load()
			limited[LimitDeviceUnauthorized] += a.Refused.Unauthorized.Load()
			limited[LimitDeviceStreams] += a.Refused.Streams.Load()
		}
		for i, o := range outcomes {
			streams.add(float64(counts[i]), o.String(), "device")
		}
		streamBytes.add(float64(up), "up", "device")
		streamBytes.add(float64(down), "down", "device")
	}
	emit(&streams)
	emit(&streamBytes)
	if len(c.https) > 0 {
		codes := map[string]uint64{}
		for _, h := range c.https {
			h.Requests.Each(func(code string, n uint64) { codes[code] += n })
		}
		f := famGatewayRequests
		for code, n := range codes {
			f.add(float64(n), code)
		}
		emit(&f)
	}
	for _, l := range c.limiters {
		limited[LimitGatewayRate] += l.Refused[0].Load()
		limited[LimitGatewayStreams] += l.Refused[1].Load()
		limited[LimitGatewayTotal] += l.Refused[2].Load()
	}
	for _, p := range c.preAuths {
		limited[LimitSOCKSPerSource] += p.Refused[0].Load()
		limited[LimitSOCKSTotal] += p.Refused[1].Load()
	}
	for _, a := range c.auths {
		limited[LimitSOCKSAuthRate] += a.Limited()
	}
	for _, b := range c.binds {
		limited[LimitBindConns] += b.OverCap()
	}
	f := famLimited
	for what, n := range limited {
		f.add(float64(n), what)
	}
	emit(&f)
	return out
}

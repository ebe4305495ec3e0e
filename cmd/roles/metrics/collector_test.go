package metrics_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/cmd/roles/metrics"
	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/test/tcptest"
)

// value is the sample of name whose labels include want; -1 if none.
func value(t *testing.T, reg *metrics.Registry, name string, want map[string]string) float64 {
	t.Helper()
	for _, f := range reg.Gather() {
		if f.Name != name {
			continue
		}
	sample:
		for _, s := range f.Samples {
			if s.Suffix != "" {
				continue
			}
			for k, v := range want {
				i := slices.Index(f.Labels, k)
				if i < 0 || i >= len(s.Values) || s.Values[i] != v {
					continue sample
				}
			}
			return s.Value
		}
	}
	return -1
}

// One process's roles, as the product starts them, with one Collector:
// a rendezvous node, a device and a client node; real streams move the
// series they should.
func TestCollectorCountsRealTraffic(t *testing.T) {
	echo := tcptest.Echo(t)
	closedAddr := tcptest.ClosedPort(t)

	col := metrics.NewCollector()
	reg := metrics.NewRegistry(col)
	ctx, cancel := context.WithCancel(context.Background())
	rkey, _ := identity.Generate()
	relay, err := roles.StartRelay(ctx, roles.RelayConfig{Key: rkey, Listen: "127.0.0.1:0", Metrics: col, Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	dkey, _ := identity.Generate()
	someone, _ := identity.Generate()
	dev, err := roles.StartDevice(ctx, roles.DeviceConfig{Key: dkey, Relays: []resolver.RelayAddr{relay.Addr()}, Metrics: col,
		Ports: []peer.Port{{Remote: 7, Target: echo, Access: peer.Public},
			{Remote: 22, Target: echo, Access: peer.Private, Allowed: []identity.ID{someone.ID()}},
			{Remote: 9, Target: closedAddr, Access: peer.Public}},
		Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ckey, _ := identity.Generate()
	cli, err := roles.StartNode(ctx, roles.NodeConfig{Key: ckey, Listen: "127.0.0.1:0", Relays: []resolver.RelayAddr{relay.Addr()},
		Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	col.AddNode(cli.Transport, cli.Dialer)
	defer func() {
		cli.Close()
		cancel()
		dev.Wait()
		relay.Wait()
	}()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := dev.Node.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}
	if err := cli.WaitRegistered(wctx); err != nil {
		t.Fatal(err)
	}
	if v := value(t, reg, "tunnel_relay_devices", nil); v != 1 {
		t.Fatalf("tunnel_relay_devices %v, want 1", v)
	}
	// The client holds its registration on a connection; the device, on
	// a lease, closed its own once registered (the relay sees the close a
	// moment later).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		v := value(t, reg, "tunnel_relay_connections", nil)
		if v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnel_relay_connections %v, want 1 (the client's)", v)
		}
	}

	s, err := cli.Dialer.DialDevice(wctx, dkey.ID(), 7)
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte("hello"))
	s.CloseWrite()
	b, _ := io.ReadAll(s)
	s.Close()
	if string(b) != "hello" {
		t.Fatalf("echo %q", b)
	}
	for port, want := range map[uint16]dialer.Outcome{22: dialer.Denied, 23: dialer.NotPublished, 9: dialer.Refused} {
		if _, err := cli.Dialer.DialDevice(wctx, dkey.ID(), port); dialer.Classify(err) != want {
			t.Fatalf("port %d: %v, want %v", port, err, want)
		}
	}
	stranger, _ := identity.Generate()
	if _, err := cli.Dialer.DialDevice(wctx, stranger.ID(), 7); !errors.Is(err, resolver.ErrOffline) {
		t.Fatalf("unknown device: %v", err)
	}

	// The device counts its side when the splice ends: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for value(t, reg, "tunnel_streams_total", map[string]string{"side": "device", "outcome": "ok"}) != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"tunnel_streams_total", map[string]string{"side": "client", "outcome": "ok"}, 1},
		{"tunnel_streams_total", map[string]string{"side": "client", "outcome": "denied"}, 1},
		{"tunnel_streams_total", map[string]string{"side": "client", "outcome": "not_published"}, 1},
		{"tunnel_streams_total", map[string]string{"side": "client", "outcome": "refused"}, 1},
		{"tunnel_streams_total", map[string]string{"side": "client", "outcome": "offline"}, 1},
		{"tunnel_streams_total", map[string]string{"side": "client", "outcome": "aborted"}, 0},
		{"tunnel_streams_total", map[string]string{"side": "device", "outcome": "ok"}, 1},
		{"tunnel_streams_total", map[string]string{"side": "device", "outcome": "denied"}, 1},
		{"tunnel_streams_total", map[string]string{"side": "device", "outcome": "not_published"}, 1},
		{"tunnel_streams_total", map[string]string{"side": "device", "outcome": "refused"}, 1},
		{"tunnel_stream_bytes_total", map[string]string{"side": "client", "direction": "up"}, 5},
		{"tunnel_stream_bytes_total", map[string]string{"side": "client", "direction": "down"}, 5},
		{"tunnel_stream_bytes_total", map[string]string{"side": "device", "direction": "up"}, 5},
		{"tunnel_stream_bytes_total", map[string]string{"side": "device", "direction": "down"}, 5},
		{"tunnel_relay_lookups_total", map[string]string{"result": "found"}, 1},
		{"tunnel_relay_lookups_total", map[string]string{"result": "not_found"}, 1},
		{"tunnel_registry_errors_total", nil, 0},
		{"tunnel_limited_total", map[string]string{"what": metrics.LimitRelayLookups}, 0},
		{"tunnel_limited_total", map[string]string{"what": metrics.LimitDeviceClients}, 0},
	} {
		if got := value(t, reg, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if v := value(t, reg, "tunnel_relay_forwarded_bytes_total", nil); v <= 0 {
		t.Errorf("tunnel_relay_forwarded_bytes_total %v, want > 0 (the first stream goes relayed)", v)
	}
	// The same state as a scrape prints it, read by Prometheus's own parser.
	var text bytes.Buffer
	if err := metrics.WriteText(&text, reg.Gather()); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	parsed, err := p.TextToMetricFamilies(&text)
	if err != nil {
		t.Fatalf("Prometheus's parser: %v", err)
	}
	found := false
	for _, m := range parsed["tunnel_streams_total"].GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if labels["side"] == "client" && labels["outcome"] == "ok" {
			found = m.GetCounter().GetValue() == 1
		}
	}
	if !found {
		t.Errorf("parsed tunnel_streams_total has no client/ok sample of 1: %v", parsed["tunnel_streams_total"])
	}

	// Both nodes hold the connection: two peers, on whichever path.
	direct := value(t, reg, "tunnel_peers", map[string]string{"path": "direct"})
	relayed := value(t, reg, "tunnel_peers", map[string]string{"path": "relayed"})
	if direct+relayed != 2 {
		t.Errorf("tunnel_peers direct %v + relayed %v, want 2", direct, relayed)
	}
}

package main

// Small boards: a one-core board's budget. A second device, the same
// `tunnel publish` of the same three services but with GOMAXPROCS=1, is
// reached through the same two socksds (which keep the default), and a
// second quic-go pipe runs its B with GOMAXPROCS=1; their bulk runs take
// part in every round next to the others, so the ratios to the default
// columns are of the same run.

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"time"
)

const oneCore = "GOMAXPROCS=1"

// Column names of the one-core targets, and the default column each is
// compared with.
var boardColumns = []struct{ name, base string }{
	{"quic-go pipe, B 1 core", "quic-go pipe"},
	{"tunnel direct, agent 1 core", "tunnel direct"},
	{"tunnel relayed, agent 1 core", "tunnel relayed"},
}

type smallBoard struct {
	device   *proc
	deviceID string
}

func (b *bench) startSmallBoard() error {
	t, _, err := b.pipeColumn(boardColumns[0].name, "pipe-1core", []string{oneCore})
	if err != nil {
		return err
	}
	b.targets = append(b.targets, t)

	devHome := filepath.Join(b.work, "device-1core")
	if b.board.deviceID, err = b.tunnelID(devHome); err != nil {
		return err
	}
	if b.board.device, err = daemonEnv("publish-1core", b.work, append(b.profileEnv(), oneCore), b.bin, "--home", devHome, "publish", "--relay", b.relayAddr,
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.sink), sinkRemote),
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.source), sourceRemote),
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.echo), echoRemote)); err != nil {
		return err
	}
	b.extra = append(b.extra, b.board.device)
	devPID, relayPID := b.board.device.pid(), b.relay.pid()
	var ts []*target
	for i, base := range []*target{b.targets[2], b.targets[3]} {
		socksPID := base.socksd.pid()
		t := &target{name: boardColumns[1+i].name, proxy: base.proxy, host: b.board.deviceID + ".tunnel",
			sink: sinkRemote, source: sourceRemote, echo: echoRemote,
			home: base.home, devHome: devHome, deviceID: b.board.deviceID, wantPath: base.wantPath, socksd: base.socksd,
			cpu: []cpuProbe{
				{"client", func() float64 { return cpuSeconds(socksPID) }},
				{"server", func() float64 { return cpuSeconds(devPID) }},
			}}
		if base.wantPath == "relayed" {
			t.cpu = append(t.cpu, cpuProbe{"relay", func() float64 { return cpuSeconds(relayPID) }})
		}
		ts = append(ts, t)
	}
	if err := b.waitPaths(ts, b.board.device); err != nil {
		return err
	}
	b.targets = append(b.targets, ts...)
	return nil
}

// ratioTo is the median over rounds of name's rate divided by base's rate
// in the same round.
func (r *results) ratioTo(name, base, dir string) float64 {
	a, s := r.bulk[name+" "+dir], r.bulk[base+" "+dir]
	var v []float64
	for i := range min(len(a), len(s)) {
		if a[i].err == nil && s[i].err == nil && s[i].gbps() > 0 {
			v = append(v, a[i].gbps()/s[i].gbps())
		}
	}
	return quantile(v, 0.5)
}

func (r *results) smallBoardTable() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nSmall boards: the agent (and the pipe's B) with %s, in the same rounds; the socksd keeps the default:\n\n", oneCore)
	fmt.Fprintf(&b, "| measure |")
	for _, c := range boardColumns {
		fmt.Fprintf(&b, " %s |", c.name)
	}
	fmt.Fprintf(&b, "\n|---|%s\n", strings.Repeat("--:|", len(boardColumns)))
	row := func(label string, cell func(name, base string) string) {
		fmt.Fprintf(&b, "| %s |", label)
		for _, c := range boardColumns {
			fmt.Fprintf(&b, " %s |", cell(c.name, c.base))
		}
		fmt.Fprintln(&b)
	}
	ratio := func(q float64) string {
		if math.IsNaN(q) {
			return dash
		}
		return fmt.Sprintf("%.2f×", q)
	}
	for _, dir := range []string{"up", "down"} {
		word := map[string]string{"up": "upload", "down": "download"}[dir]
		row(word+" Gbit/s (nc, 1 stream)", func(name, _ string) string { return r.rateCell(name, dir) })
		row(word+" ÷ the same path with the default GOMAXPROCS", func(name, base string) string { return ratio(r.ratioTo(name, base, dir)) })
		row(word+" ÷ ssh -D", func(name, _ string) string { return ratio(r.ratioTo(name, "ssh -D", dir)) })
	}
	row("connect + 1-byte echo, median ms", func(name, _ string) string {
		if s := r.lat[name]; len(s) > 0 {
			return fmt.Sprintf("%.3f", float64(quantileDur(s, 0.5))/float64(time.Millisecond))
		}
		return dash
	})
	for _, role := range []struct{ key, label string }{
		{"client", "CPU s/GB, client side (pipe A / socksd)"},
		{"server", "CPU s/GB, server side (pipe B / agent), 1 core"},
		{"relay", "CPU s/GB, relay"},
	} {
		row(role.label, func(name, _ string) string {
			if v, ok := r.cpuPerGB(name, role.key); ok {
				return fmt.Sprintf("%.2f", v)
			}
			return dash
		})
	}
	row("one core of this CPU spent on the server side alone would move (8 ÷ its CPU s/GB), Gbit/s", func(name, _ string) string {
		if v, ok := r.cpuPerGB(name, "server"); ok && v > 0 {
			return fmt.Sprintf("%.1f", 8/v)
		}
		return dash
	})
	return b.String()
}

//go:build linux

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

// noAES makes Go's crypto believe the CPU has no AES instructions, as on
// the SoCs of most Raspberry Pis: crypto/tls then prefers
// TLS_CHACHA20_POLY1305_SHA256 (the pipe's header line shows the suite).
const noAES = "GODEBUG=cpu.aes=off"

// Columns of the one-core targets: what they run (the pipe, or a device
// reached through the direct or relayed socksd), the environment of the
// pipe's B or of the device, and the default column each is compared with.
var boardColumns = []struct {
	name, kind, base string
	env              []string
}{
	{"quic-go pipe, B 1 core", "pipe", "quic-go pipe", []string{oneCore}},
	{"tunnel direct, agent 1 core", "direct", "tunnel direct", []string{oneCore}},
	{"tunnel relayed, agent 1 core", "relayed", "tunnel relayed", []string{oneCore}},
	{"quic-go pipe, B 1 core, no AES", "pipe", "quic-go pipe", []string{oneCore, noAES}},
	{"tunnel direct, agent 1 core, no AES", "direct", "tunnel direct", []string{oneCore, noAES}},
}

type smallBoard struct {
	ciphers []string // of the pipes, "name: suite"
}

func (b *bench) startSmallBoard() error {
	devices := map[string]*proc{} // env → device
	devIDs, devHomes := map[string]string{}, map[string]string{}
	var ts []*target
	for i, c := range boardColumns {
		key := strings.Join(c.env, " ")
		if c.kind == "pipe" {
			t, qp, err := b.pipeColumn(c.name, fmt.Sprintf("pipe-board%d", i), c.env)
			if err != nil {
				return err
			}
			b.targets = append(b.targets, t)
			b.board.ciphers = append(b.board.ciphers, c.name+": "+qp.cipher)
			continue
		}
		dev, ok := devices[key]
		if !ok {
			devHome := filepath.Join(b.work, fmt.Sprintf("device-board%d", len(devices)+1))
			id, err := b.tunnelID(devHome)
			if err != nil {
				return err
			}
			if dev, err = daemonEnv(fmt.Sprintf("publish-board%d", len(devices)+1), b.work, append(b.profileEnv(), c.env...), b.bin, "--home", devHome, "publish", "--relay", b.relayAddr,
				"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.sink), sinkRemote),
				"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.source), sourceRemote),
				"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.echo), echoRemote)); err != nil {
				return err
			}
			devices[key], devIDs[key], devHomes[key] = dev, id, devHome
			b.extra = append(b.extra, dev)
		}
		base := b.targets[2]
		if c.kind == "relayed" {
			base = b.targets[3]
		}
		socksPID, devPID, relayPID := base.socksd.pid(), dev.pid(), b.relay.pid()
		t := &target{name: c.name, proxy: base.proxy, host: devIDs[key] + ".tunnel",
			sink: sinkRemote, source: sourceRemote, echo: echoRemote,
			home: base.home, devHome: devHomes[key], deviceID: devIDs[key], wantPath: base.wantPath, socksd: base.socksd,
			cpu: []cpuProbe{
				{"client", func() float64 { return cpuSeconds(socksPID) }},
				{"server", func() float64 { return cpuSeconds(devPID) }},
			}}
		if c.kind == "relayed" {
			t.cpu = append(t.cpu, cpuProbe{"relay", func() float64 { return cpuSeconds(relayPID) }})
		}
		if err := b.waitPaths([]*target{t}, dev); err != nil {
			return err
		}
		ts = append(ts, t)
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

func (r *results) smallBoardTable(ciphers []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nSmall boards: the agent (and the pipe's B) with %s, and with %s too (no AES), in the same rounds; the socksd keeps its default (--procs auto: one core while light, all while busy), as does the agent of the main columns; the pipe runs at Go's default. Pipe ciphers: %s.\n\n",
		oneCore, noAES, strings.Join(ciphers, "; "))
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
		row(word+" ÷ the same path with the default (tunnel: --procs auto; pipe: Go's default)", func(name, base string) string { return ratio(r.ratioTo(name, base, dir)) })
		row(word+" ÷ ssh -D", func(name, _ string) string { return ratio(r.ratioTo(name, "ssh -D", dir)) })
	}
	row("packets the sender lost (QUIC, `tunnel status`), all rounds: up · down", func(name, _ string) string { return r.lossCell(name) })
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

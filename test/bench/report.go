//go:build linux

package main

// Statistics and the one table the bench prints.

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

type results struct {
	host    hostInfo
	layers  []layerResult        // pipe, direct, relayed (layers.go)
	bulk    map[string][]bulkRun // "NAME up" / "NAME down", in round order
	lat     map[string][]time.Duration
	latFail map[string]int
	latErr  map[string]string
	// latIdle: the same samples, each after cfg.idleGap idle (the main
	// table's paths only); latProcs: the cores of the tunnel's roles
	// before, between and after the two.
	latIdle     map[string][]time.Duration
	latIdleFail map[string]int
	latProcs    [3]string
	conc        []concResult // direct, relayed
	settle      settleResult
	neighbour   []neighbourResult
	idle        idleStreamResult
	dev         devResult
	foot        footprintResult
	elapsed     time.Duration
}

type hostInfo struct {
	date, cpu, kernel, goVersion, openssh, cipher, rev string
	pipeCipher                                         string
	loadStart                                          string
	busyStart, ownStart, other                         float64 // CPU seconds
	nproc                                              int
}

// loadAvg is the 1-minute load average. Other work on the machine skews
// every figure, so the table says how busy it was before, and how much CPU
// other processes took during the run (otherCPU).
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

func collectHost(root string) hostInfo {
	h := hostInfo{date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), nproc: runtime.NumCPU(), goVersion: runtime.Version(), loadStart: loadAvg(),
		busyStart: machineBusySeconds(), ownStart: ownTreeSeconds()}
	if out, err := exec.Command("nproc").Output(); err == nil {
		fmt.Sscan(string(out), &h.nproc)
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.kernel = strings.TrimSpace(string(b))
	}
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		h.openssh = strings.TrimSpace(string(out))
	}
	cmd := exec.Command("git", "describe", "--always", "--dirty")
	cmd.Dir = root
	if out, err := cmd.Output(); err == nil {
		h.rev = strings.TrimSpace(string(out))
	}
	return h
}

// ---- statistics ----

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if q == 0.5 && len(s)%2 == 0 {
		return (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	i := int(math.Ceil(q*float64(len(s)))) - 1 // nearest rank
	return s[max(0, min(i, len(s)-1))]
}

func quantileDur(v []time.Duration, q float64) time.Duration {
	f := make([]float64, len(v))
	for i, d := range v {
		f[i] = float64(d)
	}
	return time.Duration(quantile(f, q))
}

func fmtDur(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func check(ok bool) string {
	if ok {
		return "✓"
	}
	return "✗"
}

// ---- the table ----

var columns = []string{"raw TCP", "ssh -D", "quic-go pipe", "tunnel direct", "tunnel relayed"}

const dash = "–"

func (r *results) gbps(name, dir string) []float64 {
	var v []float64
	for _, run := range r.bulk[name+" "+dir] {
		if run.err == nil {
			v = append(v, run.gbps())
		}
	}
	return v
}

// ratioToSSH is the median over rounds of name's rate divided by ssh -D's
// rate in the same round: drift between rounds hits both alike.
func (r *results) ratioToSSH(name, dir string) float64 {
	a, s := r.bulk[name+" "+dir], r.bulk["ssh -D "+dir]
	var v []float64
	for i := range min(len(a), len(s)) {
		if a[i].err == nil && s[i].err == nil && s[i].gbps() > 0 {
			v = append(v, a[i].gbps()/s[i].gbps())
		}
	}
	return quantile(v, 0.5)
}

func (r *results) rateCell(name, dir string) string {
	runs := r.bulk[name+" "+dir]
	if len(runs) == 0 {
		return dash // not measured (-only without bulk)
	}
	v := r.gbps(name, dir)
	failed := len(runs) - len(v)
	if len(v) == 0 {
		return fmt.Sprintf("failed ×%d", failed)
	}
	s := fmt.Sprintf("%.2f (%.2f–%.2f)", quantile(v, 0.5), quantile(v, 0), quantile(v, 1))
	capped := 0
	for _, run := range runs {
		if run.err == nil && run.capped {
			capped++
		}
	}
	if capped > 0 {
		s += fmt.Sprintf(" ⏱%d", capped)
	}
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	return s
}

// cpuPerGB is the CPU seconds of role per GB (10^9 bytes) moved, over every
// successful bulk run of name, both directions.
func (r *results) cpuPerGB(name, role string) (float64, bool) {
	var sec, bytes float64
	found := false
	for _, dir := range []string{"up", "down"} {
		for _, run := range r.bulk[name+" "+dir] {
			if run.err != nil {
				continue
			}
			if v, ok := run.cpu[role]; ok {
				sec += v
				found = true
			}
			bytes += float64(run.bytes)
		}
	}
	if !found || bytes == 0 {
		return 0, false
	}
	return sec / (bytes / 1e9), true
}

// lossCell sums the packets the sending end of name's transfers sent and
// lost, each direction; a dash for a path that is not the tunnel's.
func (r *results) lossCell(name string) string {
	var parts []string
	for _, dir := range []string{"up", "down"} {
		var sent, lost uint64
		found := false
		for _, run := range r.bulk[name+" "+dir] {
			if run.lossOK {
				sent, lost, found = sent+run.sent, lost+run.lost, true
			}
		}
		if !found {
			return dash
		}
		parts = append(parts, fmt.Sprintf("%d of %.2f M", lost, float64(sent)/1e6))
	}
	return strings.Join(parts, " · ")
}

func (r *results) table() string {
	var b strings.Builder
	h := r.host
	fmt.Fprintf(&b, "date %s · nproc %d · CPU %s · kernel %s · Go %s · %s · ssh -D cipher %s (default) · quic-go pipe (tunnel's TLS config) cipher %s · tunnel %s\n\n",
		h.date, h.nproc, h.cpu, h.kernel, strings.TrimPrefix(h.goVersion, "go"), h.openssh, orDash(h.cipher), orDash(h.pipeCipher), orDash(h.rev))
	fmt.Fprintf(&b, "%d rounds, paths alternating within each; bulk: %d MiB per transfer or %s, whichever first (⏱ = stopped by time), median (min–max); "+
		"connect: %d samples per path after %d warm-up, interleaved, then %d more each after %s idle; bench runtime %s. "+
		"Quiet machine? load average %s before; processes other than the bench's used %.1f CPU-s during it (%.0f%% of one core).\n\n",
		cfg.rounds, cfg.bulkBytes>>20, cfg.bulkCap, cfg.samples, cfg.warmup, cfg.idleSamples, cfg.idleGap, r.elapsed.Round(time.Second),
		h.loadStart, h.other, 100*h.other/r.elapsed.Seconds())
	if r.latProcs[0] != "" {
		fmt.Fprintf(&b, "Cores (GOMAXPROCS, `tunnel status`) of the tunnel's roles, which run `--procs auto`: before the connect samples %s; "+
			"after the back-to-back ones %s; after the idle ones %s.\n\n", r.latProcs[0], r.latProcs[1], r.latProcs[2])
	}

	row := func(measure string, cells []string, target string) {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", measure, strings.Join(cells, " | "), target)
	}
	fmt.Fprintf(&b, "| measure | %s | target |\n", strings.Join(columns, " | "))
	fmt.Fprintf(&b, "|---|%s---|\n", strings.Repeat("--:|", len(columns)))

	// 1. bulk throughput
	for _, dir := range []string{"up", "down"} {
		word := map[string]string{"up": "upload", "down": "download"}[dir]
		var cells []string
		for _, c := range columns {
			cells = append(cells, r.rateCell(c, dir))
		}
		row(word+" Gbit/s (nc, 1 stream)", cells, "")
		cells = nil
		for _, c := range columns {
			q := r.ratioToSSH(c, dir)
			switch {
			case math.IsNaN(q):
				cells = append(cells, dash)
			case c == "tunnel direct":
				cells = append(cells, fmt.Sprintf("%.2f× %s", q, check(q >= 0.85)))
			case c == "tunnel relayed":
				cells = append(cells, fmt.Sprintf("%.2f× %s", q, check(q >= 0.6)))
			default:
				cells = append(cells, fmt.Sprintf("%.2f×", q))
			}
		}
		row(word+" ÷ ssh -D (median of per-round ratios)", cells, "direct ≥ 0.85×, relayed ≥ 0.6×")
		cells = nil
		for _, c := range columns {
			q := r.ratioTo(c, "quic-go pipe", dir)
			switch {
			case math.IsNaN(q) || !strings.HasPrefix(c, "tunnel") && c != "quic-go pipe":
				cells = append(cells, dash)
			case c == "tunnel direct":
				cells = append(cells, fmt.Sprintf("%.2f× %s", q, check(q >= 0.9)))
			default:
				cells = append(cells, fmt.Sprintf("%.2f×", q))
			}
		}
		row(word+" ÷ quic-go pipe (median of per-round ratios)", cells, "direct ≥ 0.9× when the pipe is below 0.85× ssh -D")
	}

	var loss []string
	for _, c := range columns {
		loss = append(loss, r.lossCell(c))
	}
	row("packets the sender lost (QUIC, `tunnel status`), all rounds: up · down", loss, "")

	// 2. connect latency
	med, p90, ratio := latencyCells(r.lat, r.latFail, true, "failed")
	row("connect + 1-byte echo, median ms", med, "≤ 1 ms (warm)")
	row("connect + 1-byte echo, p90 ms", p90, "")
	row("connect + echo median ÷ ssh -D", ratio, "≤ 2×")
	if len(r.latIdle) > 0 {
		idle := fmt.Sprint(cfg.idleGap)
		med, p90, ratio = latencyCells(r.latIdle, r.latIdleFail, false, dash)
		row("connect + 1-byte echo after "+idle+" idle, median ms", med, "")
		row("connect + 1-byte echo after "+idle+" idle, p90 ms", p90, "")
		row("connect + echo after "+idle+" idle, median ÷ ssh -D", ratio, "")
	}

	// 5. CPU per GB
	sum := make([]float64, len(columns))
	have := make([]bool, len(columns))
	for _, role := range []struct{ key, label string }{
		{"client", "CPU s/GB, client side (ssh / pipe A / socksd)"},
		{"server", "CPU s/GB, server side (sshd session / pipe B / agent)"},
		{"relay", "CPU s/GB, relay"},
	} {
		var cells []string
		for i, c := range columns {
			v, ok := r.cpuPerGB(c, role.key)
			if !ok {
				cells = append(cells, dash)
				continue
			}
			sum[i] += v
			have[i] = true
			cells = append(cells, fmt.Sprintf("%.2f", v))
		}
		row(role.label, cells, "")
	}
	var cells []string
	for i := range columns {
		if have[i] {
			cells = append(cells, fmt.Sprintf("%.2f", sum[i]))
		} else {
			cells = append(cells, dash)
		}
	}
	row("CPU s/GB, all of the above", cells, "")
	if r.settle != nil {
		var cells []string
		for _, c := range columns {
			cells = append(cells, orDash(r.settle.cell(c)))
		}
		row(settleRow, cells, "")
	}

	// 3. concurrent streams
	conc := map[string]concResult{}
	for _, c := range r.conc {
		conc[c.name] = c
	}
	concRow := func(label string, f func(c concResult) string, target string) {
		var cells []string
		for _, col := range columns {
			if c, ok := conc[col]; ok {
				cells = append(cells, f(c))
			} else {
				cells = append(cells, dash)
			}
		}
		row(label, cells, target)
	}
	concRow(fmt.Sprintf("%d concurrent streams × %d KiB echo: ok, wall time", cfg.streams, cfg.streamBytes>>10), func(c concResult) string {
		s := fmt.Sprintf("%d/%d in %.2f s %s", c.ok, c.n, c.wall.Seconds(), check(c.ok == c.n))
		if len(c.errs) > 0 {
			s += " (" + strings.TrimPrefix(errText(c.errs), "; errors: ") + ")"
		}
		return s
	}, "none failing")
	for _, role := range []string{"socksd", "agent", "relay"} {
		concRow(fmt.Sprintf("… %s RSS MiB: before → peak → 1 s after", role), func(c concResult) string {
			for _, f := range c.rss {
				if f.role == role {
					return fmt.Sprintf("%.1f → %.1f → %.1f", float64(f.before)/1024, float64(f.peak)/1024, float64(f.after)/1024)
				}
			}
			return dash
		}, "")
	}
	if len(r.neighbour) > 0 {
		nb := map[string]neighbourResult{}
		for _, n := range r.neighbour {
			nb[n.name] = n
		}
		for _, rw := range []struct {
			label string
			f     func(neighbourResult) string
		}{{neighbourRow, neighbourResult.cell}, {neighbourDLRow, neighbourResult.downloadCell}} {
			var cells []string
			for _, col := range columns {
				if n, ok := nb[col]; ok {
					cells = append(cells, rw.f(n))
				} else {
					cells = append(cells, dash)
				}
			}
			row(rw.label, cells, "")
		}
	}

	// 4. relay memory
	relayedOnly := func(v string) []string {
		cells := make([]string, len(columns))
		for i, c := range columns {
			cells[i] = dash
			if c == "tunnel relayed" {
				cells[i] = v
			}
		}
		return cells
	}
	if r.dev.n > 0 { // 0: not measured (-only)
		r.dev.rows(func(measure, value, target string) { row(measure, relayedOnly(value), target) })
	}
	if r.foot.agent.rss > 0 {
		r.foot.rows(row)
	}
	if r.idle.n > 0 {
		row(fmt.Sprintf("RSS per idle relayed stream (%d streams), KiB", r.idle.n), relayedOnly(r.idle.perStream()), "")
	}

	// path checks
	var pc []string
	for _, c := range columns {
		if !strings.HasPrefix(c, "tunnel") {
			pc = append(pc, dash)
			continue
		}
		want := strings.TrimPrefix(c, "tunnel ")
		n, ok := 0, 0
		for _, dir := range []string{"up", "down"} {
			for _, run := range r.bulk[c+" "+dir] {
				n++
				if run.pathBad == "" {
					ok++
				}
			}
		}
		if cr, found := conc[c]; found {
			n++
			if cr.pathBad == "" {
				ok++
			}
		}
		pc = append(pc, fmt.Sprintf("%s %d/%d %s", want, ok, n, check(ok == n)))
	}
	row("path per `tunnel status --json` (socksd and device) after each run", pc, "")
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return dash
	}
	return s
}

// otherCPU is the CPU time the machine spent on anything but this process
// and its descendants since collectHost.
func (h *hostInfo) otherCPU() float64 {
	v := (machineBusySeconds() - h.busyStart) - (ownTreeSeconds() - h.ownStart)
	return max(v, 0)
}

// latencyCells are the median, p90 and median ÷ ssh -D cells of one set of
// connect samples, a column each; with targets, the tunnel's columns carry
// their ✓ or ✗. none fills a column with no samples.
func latencyCells(lat map[string][]time.Duration, fail map[string]int, targets bool, none string) (med, p90, ratio []string) {
	sshMed := quantileDur(lat["ssh -D"], 0.5)
	for _, c := range columns {
		s := lat[c]
		if len(s) == 0 {
			med, p90, ratio = append(med, none), append(p90, dash), append(ratio, dash)
			continue
		}
		m, p := quantileDur(s, 0.5), quantileDur(s, 0.9)
		failed := ""
		if n := fail[c]; n > 0 {
			failed = fmt.Sprintf(", %d failed", n)
		}
		q := float64(m) / float64(sshMed)
		if targets && strings.HasPrefix(c, "tunnel") {
			med = append(med, fmt.Sprintf("%.3f %s%s", float64(m)/1e6, check(m <= time.Millisecond), failed))
			ratio = append(ratio, fmt.Sprintf("%.2f× %s", q, check(q <= 2)))
		} else {
			med = append(med, fmt.Sprintf("%.3f%s", float64(m)/1e6, failed))
			ratio = append(ratio, fmt.Sprintf("%.2f×", q))
		}
		p90 = append(p90, fmt.Sprintf("%.3f", float64(p)/1e6))
	}
	return med, p90, ratio
}

//go:build linux

package main

// -only: run chosen parts of the bench, with only the setup they need, so
// that one figure can be re-measured in seconds while working on it
// (`go run ./test/bench -only devices`). Without it the bench runs every
// part and prints the full table, as before.

import (
	"fmt"
	"slices"
	"strings"
)

// benchParts lists the parts in the order the full run measures them.
var benchParts = []string{"bulk", "layers", "latency", "concurrent", "neighbour", "streams", "devices", "footprint"}

// partSet is the parts to run; empty means all of them.
type partSet map[string]bool

func parseParts(s string) (partSet, error) {
	ps := partSet{}
	if s == "" {
		return ps, nil
	}
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		if !slices.Contains(benchParts, p) {
			return nil, fmt.Errorf("-only: unknown part %q (parts: %s)", p, strings.Join(benchParts, ","))
		}
		ps[p] = true
	}
	return ps, nil
}

func (ps partSet) all() bool { return len(ps) == 0 }

func (ps partSet) has(p string) bool { return ps.all() || ps[p] }

func (ps partSet) any(names ...string) bool {
	for _, n := range names {
		if ps.has(n) {
			return true
		}
	}
	return false
}

// The setup each part needs: ssh -D, the quic-go pipe and the small-board
// devices are columns of the bulk, layer and latency rows only; the
// tunnel's relay, device and socksds serve every part but devices, which
// starts a relay of its own.
func (ps partSet) needSSH() bool { return ps.any("bulk", "layers", "latency") }
func (ps partSet) needTunnel() bool {
	return ps.any("bulk", "layers", "latency", "concurrent", "neighbour", "streams", "footprint")
}

// onlyTable is the short table of a -only run: the rows of the parts run,
// one value each.
func (r *results) onlyTable(ps partSet) string {
	var b strings.Builder
	fmt.Fprintf(&b, "date %s · nproc %d · tunnel %s · parts %s · load average %s before; processes other than the bench's used %.1f CPU-s during it\n\n",
		r.host.date, r.host.nproc, orDash(r.host.rev), strings.Join(ps.sorted(), ","), r.host.loadStart, r.host.other)
	fmt.Fprintf(&b, "| measure | value | target |\n|---|--:|---|\n")
	row := func(measure string, cells []string, target string) {
		v := dash
		for _, c := range cells {
			if c != dash {
				v = c
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", measure, v, target)
	}
	for _, c := range r.conc {
		row(fmt.Sprintf("%s: %d concurrent streams × %d KiB echo: ok, wall time", c.name, cfg.streams, cfg.streamBytes>>10),
			[]string{fmt.Sprintf("%d/%d in %.2f s %s", c.ok, c.n, c.wall.Seconds(), check(c.ok == c.n))}, "none failing")
	}
	for _, n := range r.neighbour {
		row(n.name+": "+neighbourRow, []string{n.cell()}, "")
		row(n.name+": "+neighbourDLRow, []string{n.downloadCell()}, "")
	}
	if ps.has("streams") {
		row(fmt.Sprintf("RSS per idle relayed stream (%d streams), KiB", r.idle.n), []string{r.idle.perStream()}, "")
	}
	if ps.has("devices") {
		r.dev.rows(func(measure, value, target string) { row(measure, []string{value}, target) })
	}
	if ps.has("footprint") {
		r.foot.rows(row)
	}
	return b.String()
}

func (ps partSet) sorted() []string {
	var out []string
	for _, p := range benchParts {
		if ps.has(p) {
			out = append(out, p)
		}
	}
	return out
}

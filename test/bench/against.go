//go:build linux

package main

// -against: two builds side by side, for changes smaller than the noise
// between two full runs.
//
// On a shared or virtual host the same build reads 5–20 % apart from one
// bench run to the next, so a change worth 2 % cannot be told from noise by
// comparing two tables. Here both builds run at once, each with its own
// relay, device and socksds (the servers are shared), and every transfer of
// one is paired with the same transfer of the other right after it, the
// order swapped from pair to pair: drift of the host hits both sides of a
// pair alike. Each pair gives a ratio B ÷ A per figure (seconds per GB,
// each role's CPU seconds per GB), and the table shows the median ratio
// with its quartiles. The same build on both sides shows what the host's
// noise alone gives.
//
//	go run ./test/bench -against 7e3b03b          (the working tree against a commit)
//	go run ./test/bench -bin new -against old     (two binaries)

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// resolveAgainst makes the -against argument a binary: a file is one;
// anything else must be a git revision of the module at root, which is
// exported (git archive, so the working tree is untouched) and built as
// `make build` builds, into work.
func resolveAgainst(arg, root, work string) (bin, desc string, err error) {
	if st, err := os.Stat(arg); err == nil && !st.IsDir() {
		abs, err := filepath.Abs(arg)
		return abs, arg, err
	}
	rev, err := exec.Command("git", "-C", root, "rev-parse", "--verify", "--quiet", arg+"^{commit}").Output()
	if err != nil {
		return "", "", fmt.Errorf("-against %q: neither a file nor a git revision of %s", arg, root)
	}
	commit := strings.TrimSpace(string(rev))
	src := filepath.Join(work, "against-src")
	if err := os.Mkdir(src, 0o755); err != nil {
		return "", "", err
	}
	progress("building %s (-against) from a git archive of it", commit[:12])
	archive := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, commit, src)
	if out, err := archive.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("-against %s: git archive: %v\n%s", arg, err, out)
	}
	bin = filepath.Join(work, "tunnel-against")
	build := exec.Command("go", "build", "-tags", "nethttpomithttp2", "-o", bin, "./cmd/tunnel")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("-against %s: go build: %v\n%s", arg, err, out)
	}
	_ = os.RemoveAll(src)
	return bin, fmt.Sprintf("%s (%s)", arg, commit[:12]), nil
}

// pairFigure is one figure of a transfer: seconds per GB moved, or one
// role's CPU seconds per GB.
type pairFigure struct {
	name string
	of   func(r bulkRun) (float64, bool)
}

func cpuFigure(name, role string) pairFigure {
	return pairFigure{name, func(r bulkRun) (float64, bool) {
		v, ok := r.cpu[role]
		return v / (float64(r.bytes) / 1e9), ok && r.bytes > 0
	}}
}

var pairFigures = []pairFigure{
	{"time", func(r bulkRun) (float64, bool) { return r.dur.Seconds() / (float64(r.bytes) / 1e9), r.bytes > 0 }},
	cpuFigure("CPU socksd", "client"),
	cpuFigure("CPU agent", "server"),
	cpuFigure("CPU relay", "relay"),
	{"CPU socksd + agent", func(r bulkRun) (float64, bool) {
		c, okc := r.cpu["client"]
		s, oks := r.cpu["server"]
		return (c + s) / (float64(r.bytes) / 1e9), okc && oks && r.bytes > 0
	}},
}

// pairRatios is, for each figure, the ratio B ÷ A of every pair in which
// both runs succeeded and both have the figure.
func pairRatios(a, b []bulkRun) map[string][]float64 {
	out := map[string][]float64{}
	for i := range min(len(a), len(b)) {
		if a[i].err != nil || b[i].err != nil {
			continue
		}
		for _, f := range pairFigures {
			va, oka := f.of(a[i])
			vb, okb := f.of(b[i])
			if oka && okb && va > 0 {
				out[f.name] = append(out[f.name], vb/va)
			}
		}
	}
	return out
}

// ratioCell is the median of ratios with its quartiles.
func ratioCell(v []float64) string {
	if len(v) == 0 {
		return dash
	}
	return fmt.Sprintf("%.3f (%.3f–%.3f)", quantile(v, 0.5), quantile(v, 0.25), quantile(v, 0.75))
}

// sideBySide is a running setup of one build: its relay, device and two
// socksds, as the main bench starts them.
type sideBySide struct {
	label string // "A" or "B"
	desc  string // the binary or revision
	b     *bench
}

func (s *sideBySide) target(path string) *target {
	if path == "direct" {
		return s.b.direct
	}
	return s.b.relayed
}

// compare runs cfg.pairs pairs of bulk transfers for each path and
// direction, A and B in turn, and prints the table of ratios.
func (b *bench) compare(info *hostInfo, againstBin, againstDesc string) error {
	sides := []*sideBySide{
		{label: "A", desc: againstDesc, b: &bench{bin: againstBin, srv: b.srv, work: filepath.Join(b.work, "A")}},
		{label: "B", desc: b.binDesc, b: &bench{bin: b.bin, srv: b.srv, work: filepath.Join(b.work, "B")}},
	}
	for _, s := range sides {
		if err := os.MkdirAll(s.b.profileDir(), 0o755); err != nil {
			return err
		}
		progress("starting %s: %s", s.label, s.desc)
		if err := s.b.startTunnel(); err != nil {
			return fmt.Errorf("%s (%s): %w", s.label, s.desc, err)
		}
	}
	paths := []string{"direct", "relayed"}
	dirs := []string{"up", "down"}
	runs := map[string][][2]bulkRun{} // "direct up" → pairs of (A, B)
	progress("== side by side: a pair to warm up, then %d pairs × %d paths × up/down, %d MiB or %s each, the order swapped each pair",
		cfg.pairs, len(paths), cfg.bulkBytes>>20, cfg.bulkCap)
	// Pair 0 warms up (the windows of the connections grow, the pools
	// fill) and is not counted.
	for pair := 0; pair <= cfg.pairs; pair++ {
		for _, path := range paths {
			for _, dir := range dirs {
				order := []int{0, 1}
				if pair%2 == 0 {
					order = []int{1, 0}
				}
				var got [2]bulkRun
				for _, i := range order {
					s := sides[i]
					t := s.target(path)
					got[i] = s.b.bulkOnce(t, dir)
					if p, err := s.b.pathOf(t); got[i].err == nil && (err != nil || p != t.wantPath) {
						got[i].err = fmt.Errorf("path %q (%v) after the run, want %s", p, err, t.wantPath)
					}
					if err := s.b.alive(); err != nil {
						return fmt.Errorf("%s (%s): %w", s.label, s.desc, err)
					}
				}
				key := path + " " + dir
				progress("pair %d/%d %-12s A %s | B %s", pair, cfg.pairs, key, runText(got[0]), runText(got[1]))
				if pair > 0 {
					runs[key] = append(runs[key], got)
				}
			}
		}
	}
	info.other = info.otherCPU()
	fmt.Print(compareTable(*info, sides, paths, dirs, runs))
	return nil
}

func runText(r bulkRun) string {
	if r.err != nil {
		return "FAILED: " + r.err.Error()
	}
	return fmt.Sprintf("%5.2f Gbit/s%s", r.gbps(), cpuText(r.cpu))
}

func compareTable(info hostInfo, sides []*sideBySide, paths, dirs []string, runs map[string][][2]bulkRun) string {
	var w strings.Builder
	fmt.Fprintf(&w, "date %s · %s · nproc %d · kernel %s · load average %s before; processes other than the bench's used %.1f CPU-s during it\n\n",
		info.date, orDash(info.cpu), info.nproc, orDash(info.kernel), info.loadStart, info.other)
	for _, s := range sides {
		fmt.Fprintf(&w, "- %s: %s\n", s.label, s.desc)
	}
	fmt.Fprintf(&w, "\nMedian of the per-pair ratios B ÷ A (quartiles); below 1 is better for B. %d pairs of %d MiB transfers, A and B back to back, the order swapped each pair.\n\n",
		cfg.pairs, cfg.bulkBytes>>20)
	fmt.Fprintf(&w, "| path | pairs | time per GB | CPU socksd | CPU agent | CPU relay | CPU socksd + agent | A: Gbit/s, CPU s/GB | B: Gbit/s, CPU s/GB |\n")
	fmt.Fprintf(&w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, path := range paths {
		for _, dir := range dirs {
			key := path + " " + dir
			var a, b []bulkRun
			for _, p := range runs[key] {
				a, b = append(a, p[0]), append(b, p[1])
			}
			ratios := pairRatios(a, b)
			cells := []string{key, fmt.Sprint(len(ratios["time"]))}
			for _, f := range pairFigures {
				cells = append(cells, ratioCell(ratios[f.name]))
			}
			cells = append(cells, absCell(a), absCell(b))
			fmt.Fprintf(&w, "| %s |\n", strings.Join(cells, " | "))
		}
	}
	return w.String()
}

// absCell is the median rate and the CPU per GB of socksd + agent (+ the
// relay, when relayed) of one side's successful runs.
func absCell(runs []bulkRun) string {
	var rate, cpu []float64
	failed := 0
	for _, r := range runs {
		if r.err != nil || r.bytes == 0 {
			failed++
			continue
		}
		rate = append(rate, r.gbps())
		var sec float64
		for _, v := range r.cpu {
			sec += v
		}
		cpu = append(cpu, sec/(float64(r.bytes)/1e9))
	}
	if len(rate) == 0 {
		return fmt.Sprintf("failed ×%d", failed)
	}
	s := fmt.Sprintf("%.2f, %.2f", quantile(rate, 0.5), quantile(cpu, 0.5))
	if failed > 0 {
		s += fmt.Sprintf(" (%d failed)", failed)
	}
	return s
}

var errAgainstOnly = errors.New("-against runs the side-by-side comparison alone: drop -only")

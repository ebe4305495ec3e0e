// Package procs decides how many threads run a long-lived role's Go code
// at once (GOMAXPROCS): one while the role is light, as many as the
// runtime would use by itself while it is busy.
//
// Why one: a light role (an agent serving ssh sessions, a socksd behind a
// terminal or a browser) spends most of its CPU handing each packet and
// each connection from goroutine to goroutine: socket reader, quic-go's
// connection loop, the splice, the TCP legs. With more than one P a
// hand-off may wake another thread (a futex call on each side), and idle
// threads spin looking for work before they sleep again. On one P the next
// goroutine runs on the thread that readied it. Measured on the bench
// machine (2 cores, socksd and agent both at one P, 2,000 connects with a
// one-byte echo each, alternated with both at the default): connect + echo
// 1.61–1.63 → 1.13–1.16 ms median, CPU per connect 0.87 → 0.55 ms in the
// agent and 0.94 → 0.60 ms in the socksd, context switches per connect
// 28.5 → 14.6 (perf stat).
//
// Why more when busy: a device serving several bulk transfers at once, or
// a socksd under a download, can use more than one core of crypto and
// copying; one P would cap it there.
//
// Invariants: the Governor moves between exactly two counts, one and the
// runtime's default (runtime.SetDefaultGOMAXPROCS: the CPUs this process
// may use, its cgroup's limit included), and changes nothing on a machine
// where that default is one. It starts at the default, so that whatever a
// role sizes by GOMAXPROCS while starting sees the machine, and lowers
// only after QuietFor of light load. It looks once per Interval; it raises
// as soon as the one P was busy for RaiseAt of an interval, and lowers
// only after the load stayed under LowerAt for QuietFor, twice as long
// after each lowering that had to be undone within Relapse: a load near
// either threshold does not flap. A fixed count, or GOMAXPROCS in the
// environment, turns it off.
package procs

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// Setting is what --procs asks for: Auto, or a fixed count of Ps.
type Setting int

// Auto runs a Governor.
const Auto Setting = 0

// Parse reads a --procs value: "auto" or a whole number from 1.
func Parse(s string) (Setting, error) {
	if s == "" || s == "auto" {
		return Auto, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("want auto or a whole number of cores from 1, like 2")
	}
	return Setting(n), nil
}

const (
	// Interval is how often the Governor reads the process's CPU time.
	// An idle role pays one timer wake-up and one getrusage per Interval.
	Interval = time.Second
	// RaiseAt: at one P, a load of this many cores (CPU time over wall
	// time, the process's own, syscalls included) raises to the default.
	// Past it, work waits behind work on the one thread.
	RaiseAt = 0.75
	// LowerAt: at the default count, a load under this for QuietFor
	// lowers to one. It is above RaiseAt because the same work costs more
	// CPU on several Ps (above: 1.6× per connect, 1.25× per GB): what
	// lowers at 0.9 runs at 0.55–0.7 on one P, under RaiseAt. A lower
	// figure would keep a role that several Ps make look busy on them.
	LowerAt = 0.9
	// QuietFor is how long the load must stay under LowerAt.
	QuietFor = 5 * time.Second
	// Relapse: a raise this soon after a lowering means the lowering was
	// wrong; the next one then waits twice as long (up to MaxQuietFor),
	// so that work which costs the same on one P as on several does not
	// make the count flap. A lowering that holds for Relapse resets the
	// wait to QuietFor.
	Relapse     = 30 * time.Second
	MaxQuietFor = 5 * time.Minute
)

// Apply carries out s for the whole process and returns what stops it: a
// fixed count is set at once (and stop does nothing); Auto starts a
// Governor, unless GOMAXPROCS is in the environment (the user chose) or
// the default is one already. changed, if not nil, is told each change the
// Governor makes.
func Apply(s Setting, changed func(from, to int)) (stop func()) {
	if s != Auto {
		runtime.GOMAXPROCS(int(s))
		return func() {}
	}
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) <= 1 {
		return func() {}
	}
	g := NewGovernor(runtime.GOMAXPROCS(0))
	g.CPU = CPUTime
	g.Lower = func() { runtime.GOMAXPROCS(1) }
	g.Raise = func() int { runtime.SetDefaultGOMAXPROCS(); return runtime.GOMAXPROCS(0) }
	g.Changed = changed
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.Run(ctx, Interval)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// Governor holds the two-count policy. Its hooks are the process's own in
// Apply and a test's elsewhere.
type Governor struct {
	CPU     func() time.Duration // CPU time the process used so far
	Lower   func()               // go to one P
	Raise   func() int           // go to the default; returns it
	Changed func(from, to int)   // may be nil

	// The policy's figures: RaiseAt, LowerAt and QuietFor unless a test
	// wants others.
	RaiseAt, LowerAt float64
	QuietFor         time.Duration

	cur   int
	quiet time.Duration // how long the load has been under LowerAt
	need  time.Duration // how long it must be, QuietFor doubled per relapse
	low   time.Duration // time at one P since the last lowering
}

// NewGovernor returns a Governor that starts at the default count def;
// the caller sets the hooks. Its methods are for one goroutine.
func NewGovernor(def int) *Governor {
	return &Governor{cur: def, RaiseAt: RaiseAt, LowerAt: LowerAt, QuietFor: QuietFor}
}

// Run looks at the load once per every until ctx ends.
func (g *Governor) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastCPU := time.Now(), g.CPU()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := g.CPU()
			g.Step(now.Sub(last), cpu-lastCPU)
			last, lastCPU = now, cpu
		}
	}
}

// Step takes the wall time since the last step and the CPU time the
// process used in it, and changes the count if the policy says so.
func (g *Governor) Step(wall, cpu time.Duration) {
	if wall <= 0 {
		return
	}
	if g.need == 0 {
		g.need = g.QuietFor
	}
	load := float64(cpu) / float64(wall)
	switch {
	case g.cur == 1:
		g.low += wall
		if load >= g.RaiseAt {
			if g.low <= Relapse {
				g.need = min(2*g.need, MaxQuietFor)
			}
			g.set(g.Raise())
		} else if g.low >= Relapse {
			g.need = g.QuietFor
		}
	case load < g.LowerAt:
		g.quiet += wall
		if g.quiet >= g.need {
			g.Lower()
			g.set(1)
			g.low = 0
		}
	default:
		g.quiet = 0
	}
}

func (g *Governor) set(n int) {
	from := g.cur
	g.cur, g.quiet = n, 0
	if g.Changed != nil && from != n {
		g.Changed(from, n)
	}
}

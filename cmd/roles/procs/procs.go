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
// Invariants: the governor moves between exactly two counts, one and the
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

// Auto runs a governor.
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
	// Interval is how often the governor reads the process's CPU time.
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
// governor, unless GOMAXPROCS is in the environment (the user chose) or
// the default is one already. changed, if not nil, is told each change the
// governor makes.
func Apply(s Setting, changed func(from, to int)) (stop func()) {
	if s != Auto {
		runtime.GOMAXPROCS(int(s))
		return func() {}
	}
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) <= 1 {
		return func() {}
	}
	return processGovernor(changed).start(Interval)
}

// governor holds the two-count policy. Its hooks are the process's own
// (processGovernor) or a test's.
type governor struct {
	cpu     func() time.Duration // CPU time the process used so far
	lower   func()               // go to one P
	raise   func() int           // go to the default; returns it
	changed func(from, to int)   // may be nil

	// The policy's figures: RaiseAt, LowerAt and QuietFor unless a test
	// wants others.
	raiseAt, lowerAt float64
	quietFor         time.Duration

	cur   int
	quiet time.Duration // how long the load has been under lowerAt
	need  time.Duration // how long it must be, quietFor doubled per relapse
	low   time.Duration // time at one P since the last lowering
}

// newGovernor returns a governor that starts at the default count def;
// the caller sets the hooks. Its methods are for one goroutine.
func newGovernor(def int) *governor {
	return &governor{cur: def, raiseAt: RaiseAt, lowerAt: LowerAt, quietFor: QuietFor}
}

// processGovernor is a governor of this process's runtime, by its CPU
// time, starting at the runtime's current count.
func processGovernor(changed func(from, to int)) *governor {
	g := newGovernor(runtime.GOMAXPROCS(0))
	g.cpu = CPUTime
	g.lower = func() { runtime.GOMAXPROCS(1) }
	g.raise = func() int { runtime.SetDefaultGOMAXPROCS(); return runtime.GOMAXPROCS(0) }
	g.changed = changed
	return g
}

// start runs g on a goroutine of its own, looking once per every, and
// returns what stops it and waits for it.
func (g *governor) start(every time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.run(ctx, every)
	}()
	return func() {
		cancel()
		wg.Wait()
	}
}

// run looks at the load once per every until ctx ends.
func (g *governor) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	last, lastCPU := time.Now(), g.cpu()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := g.cpu()
			g.step(now.Sub(last), cpu-lastCPU)
			last, lastCPU = now, cpu
		}
	}
}

// step takes the wall time since the last step and the CPU time the
// process used in it, and changes the count if the policy says so.
func (g *governor) step(wall, cpu time.Duration) {
	if wall <= 0 {
		return
	}
	if g.need == 0 {
		g.need = g.quietFor
	}
	load := float64(cpu) / float64(wall)
	switch {
	case g.cur == 1:
		g.low += wall
		if load >= g.raiseAt {
			if g.low <= Relapse {
				g.need = min(2*g.need, MaxQuietFor)
			}
			g.set(g.raise())
		} else if g.low >= Relapse {
			g.need = g.quietFor
		}
	case load < g.lowerAt:
		g.quiet += wall
		if g.quiet >= g.need {
			g.lower()
			g.set(1)
			g.low = 0
		}
	default:
		g.quiet = 0
	}
}

func (g *governor) set(n int) {
	from := g.cur
	g.cur, g.quiet = n, 0
	if g.changed != nil && from != n {
		g.changed(from, n)
	}
}

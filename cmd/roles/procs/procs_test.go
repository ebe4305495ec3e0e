package procs

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]Setting{"": Auto, "auto": Auto, "1": 1, "4": 4, "64": 64} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"0", "-1", "1.5", "two", "Auto", " 2", "0x2", "all"} {
		if got, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %d; want an error", in, got)
		}
	}
}

// fakeGovernor records what the policy does, one second per step.
type fakeGovernor struct {
	*governor
	lowered, raised int
	changes         [][2]int
}

func newFake(def int) *fakeGovernor {
	f := &fakeGovernor{governor: newGovernor(def)}
	f.lower = func() { f.lowered++ }
	f.raise = func() int { f.raised++; return def }
	f.changed = func(from, to int) { f.changes = append(f.changes, [2]int{from, to}) }
	return f
}

func (f *fakeGovernor) load(t *testing.T, cores float64, seconds int, want int) {
	t.Helper()
	for range seconds {
		f.step(time.Second, time.Duration(cores*float64(time.Second)))
	}
	if f.cur != want {
		t.Fatalf("after %d s at %.2f cores: %d procs, want %d", seconds, cores, f.cur, want)
	}
}

// The policy: down to one only after QuietFor under LowerAt, up at once
// at RaiseAt, nothing in between.
func TestGovernorPolicy(t *testing.T) {
	f := newFake(4)
	f.load(t, 0.3, 4, 4)   // quiet, but not for 5 s yet
	f.load(t, 0.9, 1, 4)   // a busy second starts the quiet over
	f.load(t, 0.89, 4, 4)  // 4 quiet seconds again
	f.load(t, 0.89, 1, 1)  // the fifth lowers
	f.load(t, 0.74, 40, 1) // under RaiseAt stays at one however long
	f.load(t, 0.75, 1, 4)  // RaiseAt raises in one step
	f.load(t, 0.9, 30, 4)  // at LowerAt stays up
	f.load(t, 0, 5, 1)
	if f.lowered != 2 || f.raised != 1 {
		t.Fatalf("lowered %d times, raised %d; want 2 and 1", f.lowered, f.raised)
	}
	want := [][2]int{{4, 1}, {1, 4}, {4, 1}}
	if len(f.changes) != len(want) {
		t.Fatalf("changes %v; want %v", f.changes, want)
	}
	for i := range want {
		if f.changes[i] != want[i] {
			t.Fatalf("changes %v; want %v", f.changes, want)
		}
	}
	f.step(0, time.Second) // no time passed: no load to judge
	f.step(-time.Second, time.Second)
	if f.cur != 1 || f.raised != 1 {
		t.Fatalf("a step of no time changed the count")
	}
}

// Work that looks the same on one P as on several would flap between
// them every QuietFor; each raise soon after a lowering doubles the wait
// before the next lowering, up to MaxQuietFor, and a lowering that holds
// for Relapse brings the wait back to QuietFor.
func TestGovernorRelapse(t *testing.T) {
	f := newFake(2)
	f.load(t, 0.8, 5, 1) // lowers after QuietFor
	f.load(t, 0.8, 1, 2) // and is undone at once: the wait doubles
	f.load(t, 0.8, 9, 2)
	f.load(t, 0.8, 1, 1) // 10 s
	f.load(t, 0.8, 1, 2)
	f.load(t, 0.8, 19, 2)
	f.load(t, 0.8, 1, 1) // 20 s
	for range 10 {
		f.load(t, 0.8, 1, 2)
		for f.cur != 1 {
			f.step(time.Second, 800*time.Millisecond)
		}
	}
	f.load(t, 0.8, 1, 2)
	f.load(t, 0.8, int(MaxQuietFor/time.Second)-1, 2) // capped at MaxQuietFor
	f.load(t, 0.8, 1, 1)
	f.load(t, 0.5, int(Relapse/time.Second), 1) // the lowering holds
	f.load(t, 0.8, 1, 2)                        // a raise long after: no relapse
	f.load(t, 0.8, 4, 2)
	f.load(t, 0.8, 1, 1) // back to QuietFor
}

// A default that is one (a cgroup shrank) when raising leaves it at one,
// and a governor started at one never lowers.
func TestGovernorDefaultOne(t *testing.T) {
	f := newFake(1)
	f.load(t, 0, 10, 1)
	f.load(t, 2, 1, 1)
	if f.lowered != 0 || len(f.changes) != 0 {
		t.Fatalf("lowered %d, changes %v; want none", f.lowered, f.changes)
	}
}

func TestApplyFixed(t *testing.T) {
	defer runtime.SetDefaultGOMAXPROCS()
	stop := Apply(3, nil)
	defer stop()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Fatalf("GOMAXPROCS %d after Apply(3)", got)
	}
}

// waitProcs waits for the runtime to run n Ps.
func waitProcs(t *testing.T, n int, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for runtime.GOMAXPROCS(0) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: GOMAXPROCS still %d after 20 s; want %d", what, runtime.GOMAXPROCS(0), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The real thing, with the process's own CPU time and runtime: an idle
// process goes down to one P, work that keeps the one P busy brings back
// the default, and the end of the work goes back to one.
func TestGovernorRuntime(t *testing.T) {
	if os.Getenv("GOMAXPROCS") != "" {
		t.Skip("GOMAXPROCS is set in the environment")
	}
	runtime.SetDefaultGOMAXPROCS()
	defer runtime.SetDefaultGOMAXPROCS()
	def := runtime.GOMAXPROCS(0)
	if def < 2 {
		t.Skipf("the default is %d P: nothing to govern", def)
	}
	var changes atomic.Int32
	g := processGovernor(func(from, to int) { changes.Add(1) })
	// Low thresholds, so that a loaded machine that gives the burners
	// below a core still counts as busy; an idle test process uses ~0.
	g.raiseAt, g.lowerAt, g.quietFor = 0.25, 0.2, 300*time.Millisecond
	defer g.start(50 * time.Millisecond)()

	waitProcs(t, 1, "idle")
	var stop atomic.Bool
	var burners sync.WaitGroup
	for range def {
		burners.Add(1)
		go func() {
			defer burners.Done()
			for !stop.Load() {
			}
		}()
	}
	waitProcs(t, def, "busy")
	stop.Store(true)
	burners.Wait()
	waitProcs(t, 1, "idle again")
	if n := changes.Load(); n != 3 {
		t.Fatalf("%d changes; want 3 (down, up, down)", n)
	}
}

// Apply leaves the runtime alone when GOMAXPROCS is in the environment:
// the user chose.
func TestApplyRespectsEnvironment(t *testing.T) {
	runtime.SetDefaultGOMAXPROCS()
	defer runtime.SetDefaultGOMAXPROCS()
	t.Setenv("GOMAXPROCS", "2")
	before := runtime.GOMAXPROCS(0)
	stop := Apply(Auto, func(from, to int) { t.Errorf("changed %d → %d", from, to) })
	defer stop()
	time.Sleep(50 * time.Millisecond)
	if got := runtime.GOMAXPROCS(0); got != before {
		t.Fatalf("GOMAXPROCS %d; want %d, untouched", got, before)
	}
}

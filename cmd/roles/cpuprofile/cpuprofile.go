// Package cpuprofile lets a benchmark take CPU profiles of a running tunnel
// process over a window it chooses (test/bench profiles the socksd and the
// agent during bulk transfers only, not during setup).
//
// It is off unless the environment names a directory:
//
//	TUNNEL_CPU_PROFILE_DIR=/some/dir tunnel publish …
//
// Then SIGUSR1 starts a CPU profile and SIGUSR2 ends it and writes
// DIR/cpu.PID.N.pprof (N = 1, 2, … per process), renamed into place only
// once complete, so a reader that sees the name reads a whole profile.
// Nothing reaches it from the network: only whoever sets the environment
// and may signal the process. It is bounded: one profile at a time, each
// stopped after MaxDuration if no SIGUSR2 comes, and at most MaxProfiles
// per process; beyond that the signals are ignored (one line on stderr).
package cpuprofile

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"
)

// EnvDir is the environment variable that turns profiling on.
const EnvDir = "TUNNEL_CPU_PROFILE_DIR"

const (
	MaxDuration = 10 * time.Minute
	MaxProfiles = 100
)

// FromEnv starts listening for the signals if EnvDir is set and names a
// directory, and returns the function that stops listening (writing out a
// profile still running). Without EnvDir it does nothing: SIGUSR1 and
// SIGUSR2 keep their default action.
func FromEnv() (stop func()) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return func() {}
	}
	if startSignal == nil {
		fmt.Fprintf(os.Stderr, "cpuprofile: %s is set, but this system has no SIGUSR1; profiling stays off\n", EnvDir)
		return func() {}
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		fmt.Fprintf(os.Stderr, "cpuprofile: %s=%q is not a directory; profiling stays off\n", EnvDir, dir)
		return func() {}
	}
	p := &profiler{dir: dir, sigs: make(chan os.Signal, 4), quit: make(chan struct{}), done: make(chan struct{})}
	signal.Notify(p.sigs, startSignal, stopSignal)
	go p.run()
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(p.sigs)
			close(p.quit)
			<-p.done
		})
	}
}

type profiler struct {
	dir        string
	sigs       chan os.Signal
	quit, done chan struct{}

	f     *os.File // the profile being written, nil when none
	n     int      // profiles written
	limit *time.Timer
}

func (p *profiler) run() {
	defer close(p.done)
	var limit <-chan time.Time
	for {
		select {
		case <-p.quit:
			p.finish()
			return
		case <-limit:
			fmt.Fprintf(os.Stderr, "cpuprofile: no SIGUSR2 within %s; stopping the profile\n", MaxDuration)
			p.finish()
			limit = nil
		case s := <-p.sigs:
			switch {
			case s == startSignal && p.f == nil:
				if err := p.begin(); err != nil {
					fmt.Fprintf(os.Stderr, "cpuprofile: %v\n", err)
					continue
				}
				p.limit = time.NewTimer(MaxDuration)
				limit = p.limit.C
			case s == stopSignal && p.f != nil:
				p.finish()
				limit = nil
			}
		}
	}
}

func (p *profiler) tmpName() string { return PartialPath(p.dir, os.Getpid()) }

// PartialPath is where process pid writes the profile it is taking: its
// existence says that a SIGUSR1 was acted on.
func PartialPath(dir string, pid int) string {
	return filepath.Join(dir, fmt.Sprintf("cpu.%d.tmp", pid))
}

func (p *profiler) begin() error {
	if p.n >= MaxProfiles {
		return fmt.Errorf("%d profiles written already; not starting another", MaxProfiles)
	}
	f, err := os.Create(p.tmpName())
	if err != nil {
		return fmt.Errorf("start CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("start CPU profile: %w", err)
	}
	p.f = f
	return nil
}

// finish stops the profile being written, if any, and moves it into place.
func (p *profiler) finish() {
	if p.f == nil {
		return
	}
	p.limit.Stop()
	pprof.StopCPUProfile()
	err := p.f.Close()
	p.f = nil
	p.n++
	if err == nil {
		err = os.Rename(p.tmpName(), Path(p.dir, os.Getpid(), p.n))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "cpuprofile: write profile %d: %v\n", p.n, err)
	}
}

// Path is where process pid writes its n-th profile (from 1) in dir.
func Path(dir string, pid, n int) string {
	return filepath.Join(dir, fmt.Sprintf("cpu.%d.%d.pprof", pid, n))
}

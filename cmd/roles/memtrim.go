package roles

import (
	"context"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/cmd/roles/procs"
)

// A burst of work grows a process's heap for a moment, and the Go runtime
// gives the pages back to the system slowly once the garbage is collected.
// An idle process makes no garbage, so it is not collected at all until the
// runtime forces a collection (every two minutes), and what sync.Pools hold
// survives one collection more. So a role that has just done something big
// and then rests keeps its peak size for minutes: a machine with little
// memory, and a user reading RSS, should see the role's real size soon
// after the work is over. Two kinds of burst:
//
//   - A relay at rest holds its idle devices' registrations, a few KiB each
//     (relaymem_test.go), and no connection for a leased device. Making a
//     registration costs far more for as long as it lasts: the QUIC
//     connection and its TLS handshake, some 50 KiB of heap per device. A
//     burst of registrations (the relay restarted, or a fleet's network
//     came back, and every device registers within a second) grows the heap
//     by tens of MiB: after 300 devices registered in 0.3 s a relay's RSS
//     stayed at 27 MiB for ten seconds, and took twenty to settle at 18 MiB
//     (BENCHMARKS.md, round ten). Its measure is connections ended.
//   - An agent or a socksd that carried a transfer keeps the transfer's
//     buffers: received blocks and splice buffers in pools, and the pages
//     they took. After a 2 GiB upload through a fresh pair the agent's RSS
//     stayed at 25 MiB (5 before) and the socksd's at 27.5 MiB (6) for two
//     minutes; the runtime's forced collection then took the socksd to 22
//     and left the agent at 25 (BENCHMARKS.md, round sixteen). Their
//     measure is CPU time, since any work that grows the heap costs CPU.
//
// So once the measure has grown by enough and then stood (nearly) still for
// a whole tick, the process collects twice (the second frees what pools
// held at the first) and returns the free pages at once. A steady load never
// stands still for a tick and never pays for it: its pages are reused. The
// cost, two collections of a small heap and the release, comes at most once
// per tick, and only after work that cost far more.
const trimTick = 2 * time.Second

// trimRule says when a measure that only grows calls for a trim: when it
// grew by less than quiet in the last tick, and by at least enough since
// the last trim (or the start).
type trimRule struct{ quiet, enough uint64 }

var (
	// relayTrim counts ended connections; what fewer than 64 leave is not
	// worth a collection (about 3 MiB at this many).
	relayTrim = trimRule{quiet: 1, enough: 64}
	// workTrim counts CPU microseconds: a tick under 1 % of a core is
	// rest, and a quarter of a CPU-second of work is worth a trim costing
	// a few milliseconds (a 1 GiB transfer costs each side about 1.7 s).
	workTrim = trimRule{quiet: uint64(trimTick / 100 / time.Microsecond), enough: uint64(250 * time.Millisecond / time.Microsecond)}
)

// trimAfterBursts calls free on a tick when measure, read once per tick,
// makes r's case. It returns when ctx ends.
func trimAfterBursts(ctx context.Context, tick <-chan time.Time, measure func() uint64, r trimRule, free func()) {
	last := measure()
	base := last
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		n := measure()
		if n-last < r.quiet && n-base >= r.enough {
			free()
			base = n
		}
		last = n
	}
}

// trimEvery runs trimAfterBursts on a trimTick ticker of its own until
// ctx ends.
func trimEvery(ctx context.Context, measure func() uint64, r trimRule, free func()) {
	t := time.NewTicker(trimTick)
	defer t.Stop()
	trimAfterBursts(ctx, t.C, measure, r, free)
}

// freeAll collects twice, so that what sync.Pools held goes too, and gives
// the free pages back to the system.
func freeAll() {
	runtime.GC()
	debug.FreeOSMemory()
}

// TrimAfterWork gives the process's free memory back to the system each
// time a burst of work is over (workTrim), until stop is called.
//
// Not the binary's pages (exepages), which publish and socksd give back
// once after start-up: the work's code is what the next connection runs,
// and faulting it back in cost the first connect after a rest 1.2–2.8 ms
// (BENCHMARKS.md, round sixteen).
func TrimAfterWork() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	cpu := func() uint64 { return uint64(procs.CPUTime() / time.Microsecond) }
	wg.Go(func() { trimEvery(ctx, cpu, workTrim, freeAll) })
	return func() {
		cancel()
		wg.Wait()
	}
}

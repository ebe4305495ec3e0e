package roles

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/cmd/roles/procs"
)

// A burst of work grows a process's heap for a moment, and the Go runtime
// gives the pages back to the system slowly once the garbage is collected.
// A process at rest makes little garbage, so it is not collected for
// minutes (below), and what sync.Pools hold survives one collection more.
// So a role that has just done something big and then rests keeps its
// peak size for minutes: a machine with little memory, and a user reading
// RSS, should see the role's real size soon after the work is over. Two
// kinds of burst:
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
// And rest itself makes garbage, slowly: an agent or a socksd with an idle
// connection allocated about 2.5 KiB a second (0.7 once its frame MACs
// stopped allocating: the addresses it offers, quic-go's keep-alives). No
// collection comes for it: the heap is far from the 4 MiB at which the
// collector first runs, and the runtime's two-minute forced collection
// counts only from a first one. The idle CPU adding up to workTrim's
// quarter second trimmed it, after about four minutes: an idle agent grew
// from 12.1 MiB to 12.7 by then, and went between 13.0 and 13.9 after, the
// collector's own pages (about 1.1 MiB, paid once whatever starts it)
// included (BENCHMARKS.md, round eighteen). Its second measure is the bytes
// allocated, so that a role at rest comes to its resting size within
// seconds and holds it.
//
// So once a measure has grown by enough and then every measure stood
// (nearly) still for a whole tick, the process collects twice (the second
// frees what pools held at the first) and returns the free pages at once.
// A steady load never stands still for a tick and never pays for it: its
// pages are reused. The cost, two collections of a small heap and the
// release, comes at most once per tick, and only after work that cost far
// more, or after minutes of rest.
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
	// garbageTrim counts bytes allocated: rest makes a few KiB a tick, and
	// 256 KiB of garbage (some minutes of an idle agent's) is worth a trim,
	// two collections of a heap of about a MiB.
	garbageTrim = trimRule{quiet: 64 << 10, enough: 256 << 10}
)

// trimGauge is a measure that only grows, and the rule it is read by.
type trimGauge struct {
	measure func() uint64
	rule    trimRule
}

// trimAfterBursts calls free on a tick when every gauge, each read once
// per tick, grew by less than its rule's quiet in the last tick, and one
// of them grew by its rule's enough since the last trim (or the start). It
// returns when ctx ends.
func trimAfterBursts(ctx context.Context, tick <-chan time.Time, gauges []trimGauge, free func()) {
	last := make([]uint64, len(gauges))
	base := make([]uint64, len(gauges))
	for i, g := range gauges {
		last[i] = g.measure()
		base[i] = last[i]
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		quiet, enough := true, false
		for i, g := range gauges {
			n := g.measure()
			quiet = quiet && n-last[i] < g.rule.quiet
			enough = enough || n-base[i] >= g.rule.enough
			last[i] = n
		}
		if quiet && enough {
			free()
			copy(base, last)
		}
	}
}

// trimEvery runs trimAfterBursts on a trimTick ticker of its own until
// ctx ends.
func trimEvery(ctx context.Context, gauges []trimGauge, free func()) {
	t := time.NewTicker(trimTick)
	defer t.Stop()
	trimAfterBursts(ctx, t.C, gauges, free)
}

// heapAllocated returns a reader of the bytes the process has allocated on
// the heap since it started. The reader is for one goroutine at a time.
func heapAllocated() func() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	return func() uint64 {
		metrics.Read(s)
		return s[0].Value.Uint64()
	}
}

// freeAll collects twice, so that what sync.Pools held goes too, and gives
// the free pages back to the system.
func freeAll() {
	runtime.GC()
	debug.FreeOSMemory()
}

// TrimAfterWork gives the process's free memory back to the system each
// time a burst of work is over (workTrim), and at rest once its garbage
// has grown (garbageTrim), until stop is called.
//
// Not the binary's pages (exepages), which publish and socksd give back
// once after start-up: the work's code is what the next connection runs,
// and faulting it back in cost the first connect after a rest 1.2–2.8 ms
// (BENCHMARKS.md, round sixteen).
func TrimAfterWork() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	cpu := func() uint64 { return uint64(procs.CPUTime() / time.Microsecond) }
	gauges := []trimGauge{{cpu, workTrim}, {heapAllocated(), garbageTrim}}
	wg.Go(func() { trimEvery(ctx, gauges, freeAll) })
	return func() {
		cancel()
		wg.Wait()
	}
}

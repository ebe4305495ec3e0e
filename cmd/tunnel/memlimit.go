package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
)

// --memory-limit is Go's soft memory limit (debug.SetMemoryLimit, what
// GOMEMLIMIT sets) for the long-running roles. It bounds only the memory
// the Go runtime manages (heap, stacks, runtime metadata), not the pages of
// the binary itself, which are most of an idle agent's RSS (BENCHMARKS.md,
// Footprint). It is off by default: an idle agent's heap is 1-3 MiB, so a
// limit changes nothing there, and under load a limit below the live heap
// only makes the collector run harder. What it does is hand the heap a
// burst grew back to the kernel soon after the burst, instead of keeping
// it as headroom.

// minMemoryLimit is the smallest limit taken: below it the limit sits
// under an idle agent's own runtime (about 7 MiB of heap, stacks and
// metadata), and the collector would run without pause.
const minMemoryLimit = 8 << 20

func memoryLimitFlag() cli.Flag {
	return &cli.StringFlag{Name: "memory-limit", EnvVars: []string{"TUNNEL_MEMORY_LIMIT"},
		Usage: "soft limit of the Go runtime's memory (heap, stacks), e.g. 32MiB: past it the garbage collector works harder and returns freed memory to the system; " +
			"units B, KiB, MiB, GiB; off (the default) for none, or what GOMEMLIMIT says"}
}

// applyMemoryLimit sets the limit --memory-limit asks for, if any. A value
// that does not parse is a usage error, checked with the other flags
// before anything starts.
func applyMemoryLimit(c *cli.Context) error {
	v := c.String("memory-limit")
	if v == "" || v == "off" {
		return nil
	}
	n, err := parseByteSize(v)
	if err != nil {
		return usagef("--memory-limit %q: %v", v, err)
	}
	if n < minMemoryLimit {
		return usagef("--memory-limit %s: want at least 8MiB (or off)", v)
	}
	debug.SetMemoryLimit(n)
	return nil
}

// parseByteSize reads a size as GOMEMLIMIT writes it: an integer with an
// optional unit B, KiB, MiB, GiB or TiB.
func parseByteSize(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"KiB", 10}, {"MiB", 20}, {"GiB", 30}, {"TiB", 40}, {"B", 0}}
	num, shift := s, uint(0)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = rest, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a whole number of bytes with an optional unit B, KiB, MiB, GiB or TiB, like 32MiB")
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("too large")
	}
	return n << shift, nil
}

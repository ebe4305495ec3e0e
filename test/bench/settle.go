//go:build linux

package main

// What the tunnel's roles keep once the bulk rounds are over: their RSS
// before the rounds, at their end, and settleWait later. The rounds grow
// each role's heap by the transfers' buffers; a role at rest should give
// that back soon (cmd/roles/memtrim.go), not keep its peak size for
// minutes, which is what a small board or a user reading RSS would see.

import (
	"fmt"
	"time"
)

// settleWait is how long after the rounds the last reading is taken: a
// few of the trimmer's 2-second ticks.
const settleWait = 10 * time.Second

// settleFigure is one role's VmRSS, KiB, around the bulk rounds.
type settleFigure struct {
	role, col          string // "socksd", "tunnel direct"
	before, end, later int64
	err                error
}

type settleResult []settleFigure

// settleStart reads the roles' RSS before the rounds and returns what
// reads it at their end and settleWait later.
func (b *bench) settleStart() (end func() settleResult) {
	r := settleResult{
		{role: "socksd", col: b.direct.name},
		{role: "agent", col: b.direct.name}, // serves both paths
		{role: "socksd", col: b.relayed.name},
	}
	ps := []*proc{b.sDirect, b.device, b.sRelayed}
	// read is role i's RSS now; its first error is kept.
	read := func(i int) int64 {
		v, err := rssKiB(ps[i].pid())
		if err != nil && r[i].err == nil {
			r[i].err = err
		}
		return v
	}
	for i := range r {
		r[i].before = read(i)
	}
	return func() settleResult {
		for i := range r {
			r[i].end = read(i)
		}
		time.Sleep(settleWait)
		for i := range r {
			r[i].later = read(i)
		}
		for _, f := range r {
			if f.err != nil {
				progress("%-15s %-6s RSS around the bulk rounds: %v", f.col, f.role, f.err)
				continue
			}
			progress("%-15s %-6s RSS before the bulk rounds %s, at their end %s, %s later %s", f.col, f.role,
				mib(f.before), mib(f.end), settleWait, mib(f.later))
		}
		return r
	}
}

// settleRow is the table's label for the figures.
var settleRow = fmt.Sprintf("RSS MiB around the bulk rounds: before → at their end → %s later (the agent serves both paths)", settleWait)

// cell is the figures of column col, "" when it has none.
func (r settleResult) cell(col string) string {
	s := ""
	for _, f := range r {
		if f.col != col {
			continue
		}
		if s != "" {
			s += " · "
		}
		if f.err != nil {
			s += f.role + " ?"
			continue
		}
		s += fmt.Sprintf("%s %.1f → %.1f → %.1f", f.role, float64(f.before)/1024, float64(f.end)/1024, float64(f.later)/1024)
	}
	return s
}

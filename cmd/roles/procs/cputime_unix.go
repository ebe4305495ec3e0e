//go:build !windows

package procs

import (
	"syscall"
	"time"
)

// CPUTime is the CPU time this process has used, user and system; 0 if
// the system does not say.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

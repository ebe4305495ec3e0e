//go:build unix

package cpuprofile

import (
	"os"
	"syscall"
)

// The signals that start and stop a profile.
var startSignal, stopSignal os.Signal = syscall.SIGUSR1, syscall.SIGUSR2

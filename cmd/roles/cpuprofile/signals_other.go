//go:build !unix

package cpuprofile

import "os"

// No SIGUSR1 or SIGUSR2 here (Windows): profiling stays off.
var startSignal, stopSignal os.Signal

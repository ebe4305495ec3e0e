//go:build !linux

package metrics

import "time"

// started stands for the process's start time where /proc is not there to
// read it: package initialization, a few milliseconds after exec.
var started = time.Now()

// processFamilies is, off Linux, the start time alone: enough for a
// dashboard to tell restarts (examples/prometheus).
func processFamilies() []Family {
	return []Family{{Name: "process_start_time_seconds", Type: Gauge,
		Help:    "Start time of the process since unix epoch in seconds.",
		Samples: []Sample{{Value: float64(started.UnixNano()) / 1e9}}}}
}

package metrics

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// The go_* series, with the names, types and meanings of Prometheus's
// own Go collector, so that dashboards written for any Go program work
// here too. Most are sums of runtime/metrics values (read without
// stopping the world); the GC pause summary and the last GC's time come
// from debug.ReadGCStats.

// runtimeNames are the runtime/metrics values read per scrape, indexed by
// the rt* constants.
var runtimeNames = [...]string{
	rtHeapObjectsBytes: "/memory/classes/heap/objects:bytes",
	rtHeapUnused:       "/memory/classes/heap/unused:bytes",
	rtHeapReleased:     "/memory/classes/heap/released:bytes",
	rtHeapFree:         "/memory/classes/heap/free:bytes",
	rtHeapStacks:       "/memory/classes/heap/stacks:bytes",
	rtOSStacks:         "/memory/classes/os-stacks:bytes",
	rtMCacheInuse:      "/memory/classes/metadata/mcache/inuse:bytes",
	rtMCacheFree:       "/memory/classes/metadata/mcache/free:bytes",
	rtMSpanInuse:       "/memory/classes/metadata/mspan/inuse:bytes",
	rtMSpanFree:        "/memory/classes/metadata/mspan/free:bytes",
	rtMetaOther:        "/memory/classes/metadata/other:bytes",
	rtBuckets:          "/memory/classes/profiling/buckets:bytes",
	rtOther:            "/memory/classes/other:bytes",
	rtTotal:            "/memory/classes/total:bytes",
	rtAllocBytes:       "/gc/heap/allocs:bytes",
	rtAllocObjects:     "/gc/heap/allocs:objects",
	rtFreeObjects:      "/gc/heap/frees:objects",
	rtTinyAllocs:       "/gc/heap/tiny/allocs:objects",
	rtHeapObjects:      "/gc/heap/objects:objects",
	rtHeapGoal:         "/gc/heap/goal:bytes",
	rtGOGC:             "/gc/gogc:percent",
	rtMemLimit:         "/gc/gomemlimit:bytes",
	rtGOMAXPROCS:       "/sched/gomaxprocs:threads",
	rtGoroutines:       "/sched/goroutines:goroutines",
}

const (
	rtHeapObjectsBytes = iota
	rtHeapUnused
	rtHeapReleased
	rtHeapFree
	rtHeapStacks
	rtOSStacks
	rtMCacheInuse
	rtMCacheFree
	rtMSpanInuse
	rtMSpanFree
	rtMetaOther
	rtBuckets
	rtOther
	rtTotal
	rtAllocBytes
	rtAllocObjects
	rtFreeObjects
	rtTinyAllocs
	rtHeapObjects
	rtHeapGoal
	rtGOGC
	rtMemLimit
	rtGOMAXPROCS
	rtGoroutines
	numRuntime
)

// runtimeFamilies reads the Go runtime's state now.
func runtimeFamilies() []Family {
	samples := make([]rtmetrics.Sample, numRuntime)
	for i := range samples {
		samples[i].Name = runtimeNames[i]
	}
	rtmetrics.Read(samples)
	v := func(i int) float64 {
		switch s := samples[i].Value; s.Kind() {
		case rtmetrics.KindUint64:
			return float64(s.Uint64())
		case rtmetrics.KindFloat64:
			return s.Float64()
		}
		return 0 // a name this Go does not know (TestRuntimeNamesExist)
	}
	gauge := func(name, help string, val float64) Family {
		return Family{Name: name, Help: help, Type: Gauge, Samples: []Sample{{Value: val}}}
	}
	counter := func(name, help string, val float64) Family {
		return Family{Name: name, Help: help, Type: Counter, Samples: []Sample{{Value: val}}}
	}

	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5) // min, 25 %, 50 %, 75 %, max
	debug.ReadGCStats(&gc)
	pauses := Family{Name: "go_gc_duration_seconds", Type: Summary, Labels: []string{"quantile"},
		Help: "A summary of the wall-time pause (stop-the-world) duration in garbage collection cycles."}
	for i, q := range []string{"0", "0.25", "0.5", "0.75", "1"} {
		pauses.add(gc.PauseQuantiles[i].Seconds(), q)
	}
	pauses.Samples = append(pauses.Samples,
		Sample{Suffix: "_sum", Value: gc.PauseTotal.Seconds()},
		Sample{Suffix: "_count", Value: float64(gc.NumGC)})
	var lastGC float64
	if !gc.LastGC.IsZero() {
		lastGC = float64(gc.LastGC.UnixNano()) / 1e9
	}
	threads, _ := runtime.ThreadCreateProfile(nil)
	info := Family{Name: "go_info", Type: Gauge, Labels: []string{"version"},
		Help: "Information about the Go environment."}
	info.add(1, runtime.Version())

	heapInuse := v(rtHeapObjectsBytes) + v(rtHeapUnused)
	heapIdle := v(rtHeapReleased) + v(rtHeapFree)
	return []Family{
		pauses,
		gauge("go_gc_gogc_percent", "Heap size target percentage configured by the user, otherwise 100 (GOGC).", v(rtGOGC)),
		gauge("go_gc_gomemlimit_bytes", "Go runtime memory limit configured by the user, otherwise math.MaxInt64 (GOMEMLIMIT, --memory-limit).", v(rtMemLimit)),
		gauge("go_goroutines", "Number of goroutines that currently exist.", v(rtGoroutines)),
		info,
		gauge("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.", v(rtHeapObjectsBytes)),
		counter("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already.", v(rtAllocBytes)),
		gauge("go_memstats_buck_hash_sys_bytes", "Number of bytes used by the profiling bucket hash table.", v(rtBuckets)),
		counter("go_memstats_frees_total", "Total number of heap objects frees.", v(rtFreeObjects)+v(rtTinyAllocs)),
		gauge("go_memstats_gc_sys_bytes", "Number of bytes used for garbage collection system metadata.", v(rtMetaOther)),
		gauge("go_memstats_heap_alloc_bytes", "Number of heap bytes allocated and currently in use, same as go_memstats_alloc_bytes.", v(rtHeapObjectsBytes)),
		gauge("go_memstats_heap_idle_bytes", "Number of heap bytes waiting to be used.", heapIdle),
		gauge("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", heapInuse),
		gauge("go_memstats_heap_objects", "Number of currently allocated objects.", v(rtHeapObjects)),
		gauge("go_memstats_heap_released_bytes", "Number of heap bytes released to OS.", v(rtHeapReleased)),
		gauge("go_memstats_heap_sys_bytes", "Number of heap bytes obtained from system.", heapInuse+heapIdle),
		gauge("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", lastGC),
		counter("go_memstats_mallocs_total", "Total number of heap objects allocated, both live and gc-ed.", v(rtAllocObjects)+v(rtTinyAllocs)),
		gauge("go_memstats_mcache_inuse_bytes", "Number of bytes in use by mcache structures.", v(rtMCacheInuse)),
		gauge("go_memstats_mcache_sys_bytes", "Number of bytes used for mcache structures obtained from system.", v(rtMCacheInuse)+v(rtMCacheFree)),
		gauge("go_memstats_mspan_inuse_bytes", "Number of bytes in use by mspan structures.", v(rtMSpanInuse)),
		gauge("go_memstats_mspan_sys_bytes", "Number of bytes used for mspan structures obtained from system.", v(rtMSpanInuse)+v(rtMSpanFree)),
		gauge("go_memstats_next_gc_bytes", "Number of heap bytes when next garbage collection will take place.", v(rtHeapGoal)),
		gauge("go_memstats_other_sys_bytes", "Number of bytes used for other system allocations.", v(rtOther)),
		gauge("go_memstats_stack_inuse_bytes", "Number of bytes obtained from system for stack allocator.", v(rtHeapStacks)),
		gauge("go_memstats_stack_sys_bytes", "Number of bytes obtained from system for stack allocator and OS thread stacks.", v(rtHeapStacks)+v(rtOSStacks)),
		gauge("go_memstats_sys_bytes", "Number of bytes obtained from system.", v(rtTotal)),
		gauge("go_sched_gomaxprocs_threads", "The current runtime.GOMAXPROCS setting (tunnel's --procs moves it).", v(rtGOMAXPROCS)),
		gauge("go_threads", "Number of OS threads created.", float64(threads)),
	}
}

package metrics

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The process_* series on Linux, with the names and meanings of
// Prometheus's own process collector, read from /proc per scrape. A file
// that cannot be read leaves its series out of that scrape; nothing is
// cached.

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture Go supports.
const userHZ = 100

// processFamilies reads this process's state now.
func processFamilies() []Family {
	var out []Family
	gauge := func(name, help string, v float64) {
		out = append(out, Family{Name: name, Help: help, Type: Gauge, Samples: []Sample{{Value: v}}})
	}
	counter := func(name, help string, v float64) {
		out = append(out, Family{Name: name, Help: help, Type: Counter, Samples: []Sample{{Value: v}}})
	}
	if st, ok := readStat(); ok {
		counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", float64(st.utime+st.stime)/userHZ)
		gauge("process_resident_memory_bytes", "Resident memory size in bytes.", float64(st.rss*uint64(os.Getpagesize())))
		gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", float64(st.vsize))
		if boot, ok := bootTime(); ok {
			gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", float64(boot)+float64(st.start)/userHZ)
		}
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		gauge("process_max_fds", "Maximum number of open file descriptors.", float64(lim.Cur))
	}
	if syscall.Getrlimit(syscall.RLIMIT_AS, &lim) == nil {
		gauge("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.", float64(lim.Cur))
	}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, err := d.Readdirnames(-1)
		d.Close()
		if err == nil {
			gauge("process_open_fds", "Number of open file descriptors.", float64(len(names)))
		}
	}
	if rx, tx, ok := netBytes(); ok {
		counter("process_network_receive_bytes_total", "Number of bytes received over the network by the process's network namespace.", float64(rx))
		counter("process_network_transmit_bytes_total", "Number of bytes sent over the network by the process's network namespace.", float64(tx))
	}
	return out
}

type procStat struct{ utime, stime, start, vsize, rss uint64 }

// readStat parses /proc/self/stat. Its second field, the command in
// parentheses, may hold spaces and parentheses itself, so the fields are
// counted from the last ')'.
func readStat() (procStat, bool) {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, false
	}
	return parseStat(b)
}

func parseStat(b []byte) (procStat, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, state
	if len(f) < 22 {
		return procStat{}, false
	}
	var st procStat
	for _, p := range []struct {
		field int
		to    *uint64
	}{{14, &st.utime}, {15, &st.stime}, {22, &st.start}, {23, &st.vsize}, {24, &st.rss}} {
		v, err := strconv.ParseUint(f[p.field-3], 10, 64)
		if err != nil {
			return procStat{}, false
		}
		*p.to = v
	}
	return st, true
}

// bootTime is /proc/stat's btime: when the system booted, in seconds
// since the epoch.
func bootTime() (uint64, bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// netBytes sums received and sent bytes over the interfaces of
// /proc/self/net/dev (the namespace's, as Prometheus's collector reports).
func netBytes() (rx, tx uint64, ok bool) {
	b, err := os.ReadFile("/proc/self/net/dev")
	if err != nil {
		return 0, 0, false
	}
	return parseNetDev(b)
}

func parseNetDev(b []byte) (rx, tx uint64, ok bool) {
	for line := range strings.Lines(string(b)) {
		_, counts, found := strings.Cut(line, ":")
		if !found {
			continue // the two header lines
		}
		f := strings.Fields(counts)
		if len(f) < 9 {
			return 0, 0, false
		}
		r, err1 := strconv.ParseUint(f[0], 10, 64)
		t, err2 := strconv.ParseUint(f[8], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, false
		}
		rx, tx = rx+r, tx+t
	}
	return rx, tx, true
}

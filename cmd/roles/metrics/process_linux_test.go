package metrics

import (
	"os"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	// A command name with a space and a ')' in it; fields as proc(5) numbers them.
	line := "4242 (tun) nel) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 123456 1308524544 4382 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, ok := parseStat([]byte(line))
	if !ok {
		t.Fatal("not parsed")
	}
	if want := (procStat{utime: 250, stime: 50, start: 123456, vsize: 1308524544, rss: 4382}); st != want {
		t.Fatalf("%+v, want %+v", st, want)
	}
	for _, bad := range []string{"", "4242 (tun", "4242 (tun) S 1 2 3", "4242 (tun) S 1 4242 4242 0 -1 4194560 1000 0 0 0 x 50 0 0 20 0 9 0 123456 1308524544 4382 1"} {
		if _, ok := parseStat([]byte(bad)); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	dev := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0
  eth0: 2000      20    0    0    0     0          0         0     3000      30    0    0    0     0       0          0
`
	rx, tx, ok := parseNetDev([]byte(dev))
	if !ok || rx != 3000 || tx != 4000 {
		t.Fatalf("rx %d tx %d ok %v, want 3000 4000", rx, tx, ok)
	}
	if _, _, ok := parseNetDev([]byte("  eth0: 1 2 3\n")); ok {
		t.Fatal("a short line parsed")
	}
}

// This process's own series, read from /proc, are what it is.
func TestProcessFamilies(t *testing.T) {
	got := map[string]float64{}
	for _, f := range processFamilies() {
		got[f.Name] = f.Samples[0].Value
	}
	for _, n := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes", "process_virtual_memory_bytes",
		"process_start_time_seconds", "process_max_fds", "process_virtual_memory_max_bytes", "process_open_fds",
		"process_network_receive_bytes_total", "process_network_transmit_bytes_total"} {
		if _, ok := got[n]; !ok {
			t.Errorf("no %s", n)
		}
	}
	now := float64(time.Now().Unix())
	if s := got["process_start_time_seconds"]; s > now+1 || s < now-3600 {
		t.Errorf("process_start_time_seconds %v, now %v", s, now)
	}
	if r := got["process_resident_memory_bytes"]; r < 1<<20 || r > got["process_virtual_memory_bytes"] {
		t.Errorf("process_resident_memory_bytes %v (virtual %v)", r, got["process_virtual_memory_bytes"])
	}
	f, err := os.Open(os.DevNull) // one more descriptor is seen
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var open float64
	for _, f := range processFamilies() {
		if f.Name == "process_open_fds" {
			open = f.Samples[0].Value
		}
	}
	if open != got["process_open_fds"]+1 {
		t.Errorf("process_open_fds %v after opening one more, was %v", open, got["process_open_fds"])
	}
}

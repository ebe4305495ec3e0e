//go:build linux

package main

import (
	"os"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/cmd/roles/procs"
)

// statusKiB reads the fields asked for, in their order, from this
// process's own /proc status, and refuses a field that is not there.
func TestStatusKiB(t *testing.T) {
	v, err := statusKiB(os.Getpid(), "RssFile", "VmRSS", "RssAnon")
	if err != nil {
		t.Fatal(err)
	}
	if v[1] <= 0 || v[0]+v[2] > v[1]+v[1]/10 {
		t.Fatalf("RssFile %d, VmRSS %d, RssAnon %d KiB: want VmRSS > 0 and about RssAnon + RssFile (+ RssShmem)", v[0], v[1], v[2])
	}
	rss, err := rssKiB(os.Getpid())
	if err != nil || rss <= 0 {
		t.Fatalf("rssKiB = %d, %v", rss, err)
	}
	if _, err := statusKiB(os.Getpid(), "VmRSS", "NoSuchField"); err == nil {
		t.Fatal("a missing field was not an error")
	}
}

// threadTimes sums this process's threads: the CPU time it reports grows
// by about the work done (as procs.CPUTime, getrusage, counts it), and a thread that
// sleeps and wakes counts the wake-ups.
func TestThreadTimes(t *testing.T) {
	cpu := procs.CPUTime
	run0, n0, err := threadTimes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cpu0 := cpu()
	for range 20 {
		time.Sleep(time.Millisecond) // a wake-up each
	}
	sum := 0
	for start := time.Now(); cpu()-cpu0 < 200*time.Millisecond && time.Since(start) < 20*time.Second; {
		for i := range 100000 {
			sum += i
		}
	}
	run1, n1, err := threadTimes(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	used, ran := cpu()-cpu0, time.Duration(run1-run0)
	if n1-n0 < 20 {
		t.Fatalf("threads put on a CPU %d times over 20 sleeps; want at least 20", n1-n0)
	}
	if ran < used*3/4 || ran > used*5/4+20*time.Millisecond {
		t.Fatalf("threads ran %s while getrusage counted %s (sum %d): want about the same", ran, used, sum)
	}
	if _, _, err := threadTimes(1 << 30); err == nil {
		t.Fatal("no error for a process that does not exist")
	}
}

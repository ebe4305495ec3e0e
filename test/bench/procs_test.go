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

// settledRSS reads only once the RSS has stood still for rssStill: while
// this process's RSS grows in steps, it waits, and its reading comes at
// least rssStill after the last step. (A lower bound only: a slow machine
// makes it later, never earlier.)
func TestSettledRSSWaitsForStillness(t *testing.T) {
	const steps, step = 8, 8 << 20
	var lastStep time.Time
	var held [][]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(trimSettle - time.Second)
		for range steps {
			b := make([]byte, step)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1 // touched, so resident
			}
			held = append(held, b)
			lastStep = time.Now()
			time.Sleep(300 * time.Millisecond)
		}
	}()
	v, err := settledRSS([]int{os.Getpid()})
	read := time.Now()
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if v[0] <= 0 {
		t.Fatalf("RSS %d KiB", v[0])
	}
	if got := read.Sub(lastStep); got < rssStill {
		t.Fatalf("read %v after the RSS last moved; want at least %v", got, rssStill)
	}
	if _, err := settledRSS([]int{1 << 30}); err == nil {
		t.Fatal("a process that does not exist: no error")
	}
	_ = held
}

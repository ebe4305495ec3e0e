//go:build linux

package main

import (
	"os"
	"testing"
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

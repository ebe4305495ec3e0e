package exepages

import (
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// rssFile is this process's resident file-backed memory, in bytes.
func rssFile(t *testing.T) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// Release unmaps the test binary's pages, and the program runs on: code,
// read-only data, the function table (a stack trace, a collection) and
// goroutines all work after it.
func TestRelease(t *testing.T) {
	before := rssFile(t)
	released, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("RssFile %d KiB before, %d KiB after; released %d KiB", before>>10, after>>10, released>>10)
	if released <= 0 || after >= before {
		t.Fatalf("released %d bytes, RssFile %d -> %d: want less resident", released, before, after)
	}

	words := strings.Fields("the pages come back from the page cache when touched")
	sort.Strings(words)
	done := make(chan string)
	go func() {
		buf := make([]byte, 64<<10)
		done <- string(buf[:runtime.Stack(buf, false)])
	}()
	runtime.GC()
	if stack := <-done; !strings.Contains(stack, "exepages.TestRelease") || words[0] != "back" {
		t.Fatalf("after Release: words %q, stack %q", words, stack)
	}
	// A second call finds what came back, and releases it again.
	if _, err := Release(); err != nil {
		t.Fatal(err)
	}
}

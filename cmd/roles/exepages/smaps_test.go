package exepages

import (
	"fmt"
	"testing"
)

const exe = "/usr/bin/tunnel dir/tunnel" // a space in the path, as a path may have

// entry is one mapping of an smaps text.
func entry(rng, perms, path, anon, locked, flags string) string {
	return fmt.Sprintf("%s %s 00000000 08:01 123456                     %s\n"+
		"Size:               5476 kB\nKernelPageSize:        4 kB\nRss:                5092 kB\nPss:                5092 kB\n"+
		"Private_Clean:      5092 kB\nAnonymous:          %s\nLocked:             %s\nTHPeligible:    0\nVmFlags: %s\n",
		rng, perms, path, anon, locked, flags)
}

func TestReleasable(t *testing.T) {
	smaps := entry("00400000-00959000", "r-xp", exe, "0 kB", "0 kB", "rd ex mr mw me dw") + // code: yes
		entry("00959000-00f2f000", "r--p", exe, "0 kB", "0 kB", "rd mr mw me dw") + // read-only data: yes
		entry("00f2f000-00f92000", "rw-p", exe, "0 kB", "0 kB", "rd wr mr mw me dw ac") + // writable
		entry("00f92000-00f99000", "r--p", exe, "8 kB", "0 kB", "rd mr mw me dw") + // relocated (RELRO)
		entry("00f99000-00f9a000", "r--p", exe, "0 kB", "4 kB", "rd mr mw me dw lo") + // locked
		entry("00f9a000-00f9b000", "r--s", exe, "0 kB", "0 kB", "rd sh mr mw me ms") + // shared
		entry("7f0000000000-7f0000100000", "r-xp", "/usr/lib/libc.so.6", "0 kB", "0 kB", "rd ex mr mw me") + // another file
		entry("7f0000100000-7f0000200000", "r-xp", exe+" (deleted)", "0 kB", "0 kB", "rd ex mr mw me") + // an older binary
		"7ffe359be000-7ffe359df000 rw-p 00000000 00:00 0                          [stack]\nRss: 16 kB\nAnonymous: 16 kB\n" +
		"7ffe359df000-7ffe359e0000 r--p 00000000 00:00 0\nRss: 4 kB\nAnonymous: 0 kB\n" + // anonymous, no path
		"garbage line\n" +
		entry("02000000-02001000", "r-xp", exe, "0 kB", "0 kB", "rd ex") + // yes, after garbage
		"02001000-02002000 r-xp 00000000 08:01 123456 " + exe + "\nRss: lots\n" // unreadable Rss
	got := releasable([]byte(smaps), exe)
	want := []mapping{{0x400000, 0x959000, 5092 << 10}, {0x959000, 0xf2f000, 5092 << 10}, {0x2000000, 0x2001000, 5092 << 10}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("releasable = %x\nwant %x", got, want)
	}
	if got := releasable(nil, exe); len(got) != 0 {
		t.Errorf("releasable of nothing = %v", got)
	}
	if got := releasable([]byte(smaps), "/other"); len(got) != 0 {
		t.Errorf("releasable of another exe = %v", got)
	}
}

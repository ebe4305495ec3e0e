package exepages

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// mapping is one mapping of /proc/PID/smaps that Release may unmap.
type mapping struct {
	start, end uintptr
	rss        int64 // bytes resident
}

// releasable lists the mappings in smaps (the text of /proc/self/smaps)
// of the file exe that are private, readable, not writable, hold no
// private copy of a page and are not locked.
//
// Each mapping in smaps is a header line,
//
//	START-END PERMS OFFSET DEV INODE [PATH]
//
// then "Key: value" lines (Rss: N kB, Anonymous: N kB, ... VmFlags: ...).
// A line it cannot read ends the mapping it is in without releasing it.
func releasable(smaps []byte, exe string) []mapping {
	var out []mapping
	var cur mapping
	ok := false // cur is a candidate so far
	flush := func() {
		if ok {
			out = append(out, cur)
		}
		ok = false
	}
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		key, val, isField := strings.Cut(line, ":")
		if isField && !strings.Contains(key, " ") && !strings.Contains(key, "-") {
			if !ok {
				continue
			}
			val = strings.TrimSpace(val)
			switch key {
			case "Rss":
				kb, err := strconv.ParseInt(strings.TrimSuffix(val, " kB"), 10, 64)
				cur.rss, ok = kb<<10, err == nil
			case "Anonymous", "Locked":
				ok = val == "0 kB"
			case "VmFlags":
				ok = !strings.Contains(" "+val+" ", " lo ")
			}
			continue
		}
		flush()
		cur, ok = header(line, exe)
	}
	flush()
	return out
}

// header reads a mapping's header line; ok if it maps exe, private,
// readable and not writable.
func header(line, exe string) (m mapping, ok bool) {
	f := strings.Fields(line)
	if len(f) < 6 {
		return m, false
	}
	// The path is the rest of the line after the inode, spaces and all.
	_, path, _ := strings.Cut(line, " "+f[4]+" ")
	if strings.TrimSpace(path) != exe {
		return m, false
	}
	perms := f[1]
	if len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
		return m, false
	}
	lo, hi, found := strings.Cut(f[0], "-")
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if !found || err1 != nil || err2 != nil || end <= start {
		return m, false
	}
	return mapping{start: uintptr(start), end: uintptr(end)}, true
}

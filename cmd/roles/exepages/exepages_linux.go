package exepages

import (
	"fmt"
	"os"
	"syscall"
)

// Release unmaps the executable's read-only pages from the process (see
// the package comment) and returns how many bytes of them were resident.
func Release() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("release start-up pages: %w", err)
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("release start-up pages: %w", err)
	}
	var released int64
	for _, m := range releasable(smaps, exe) {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); e != 0 {
			return released, fmt.Errorf("release start-up pages %#x-%#x: %w", m.start, m.end, e)
		}
		released += m.rss
	}
	return released, nil
}

// Package exepages gives back the pages of the tunnel binary that starting
// touched: once a long-running role is up, Release unmaps the binary's
// read-only mappings (code, read-only data, the function table) from the
// process, so that its resident set holds what the role goes on using
// instead of everything start-up ran once.
//
// Why: a Go program's package initializers and the runtime's start-up are
// spread over the whole binary, and the kernel maps the neighbours of each
// page faulted in (fault-around, 64 KiB); after start-up nearly all of the
// binary's code and read-only data is mapped: 10.4 MiB of an idle agent's
// 13.2 MiB RSS on the bench machine (BENCHMARKS.md, round seven). Those
// pages are clean copies of the file, and while mapped the kernel reclaims
// them last (code that is mapped gets a second pass on the active list).
// Unmapped, they stay in the page cache, shared with any other tunnel
// process, until the kernel wants the memory; what the role touches again
// comes back with a minor fault, from the page cache, without a read.
//
// Invariants: only mappings of the running executable's own file that are
// private, not writable, hold no private copy of any page (Anonymous: 0,
// so no relocation or other write is lost: their contents are exactly the
// file's) and are not locked are released; nothing else is touched, and
// the program runs on unchanged, as MADV_DONTNEED on such a mapping only
// drops page table entries. Elsewhere than on Linux Release does nothing.
package exepages

//go:build !windows

package socks

import "syscall"

// acceptResourceErrs are the errors of an accept that ran out of
// descriptors or memory.
var acceptResourceErrs = []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM}

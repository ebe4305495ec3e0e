package socks

import "syscall"

// acceptResourceErrs are Winsock's errors of an accept that ran out of
// sockets or buffers (WSAEMFILE, WSAENOBUFS), and the system's out of
// memory (ERROR_NOT_ENOUGH_MEMORY).
var acceptResourceErrs = []error{syscall.Errno(10024), syscall.Errno(10055), syscall.Errno(8)}

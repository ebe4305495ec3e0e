//go:build !windows

package roles

import (
	"errors"
	"os"
	"syscall"
)

// restrictSocket lets only the owner (and root) connect to the control
// socket at path: connecting needs write permission on the socket file.
// The home is made 0700 as well; the socket's own mode guards a home that
// someone opened wider.
func restrictSocket(path string) error { return os.Chmod(path, 0o600) }

// connRefused: a socket file nothing listens on any more.
func connRefused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

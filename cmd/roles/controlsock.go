package roles

// Where a control socket (control.go) can live on each system, and how a
// client tells "nothing runs there" from a real failure. The socket is
// AF_UNIX everywhere: Linux and macOS have it, and so does Windows since
// Windows 10 (1803), where Go's net package speaks "unix" as well.

import (
	"errors"
	"fmt"
	"os"
)

// ErrSocketPathTooLong is wrapped by the refusal of a control socket path
// longer than the system's sockaddr_un allows.
var ErrSocketPathTooLong = errors.New("control socket path too long")

// socketPathMax is the longest control socket path, in bytes, that goos
// lets bind and connect use: sun_path less its terminating NUL. Linux and
// Windows (afunix.h) have 108 bytes, macOS and the BSDs 104. Zero: not
// known here, the system decides.
func socketPathMax(goos string) int {
	switch goos {
	case "linux", "android", "windows":
		return 107
	case "darwin", "ios", "freebsd", "netbsd", "openbsd", "dragonfly":
		return 103
	}
	return 0
}

// checkSocketPath refuses a control socket path that goos cannot bind.
// Without it the refusal is the kernel's "invalid argument", which does not
// say that the cure is a shorter --home. No shorter path is chosen in its
// place: a socket outside the home would need a directory of its own with
// the home's protection, and clients would have to find it.
func checkSocketPath(goos, path string) error {
	if max := socketPathMax(goos); max > 0 && len(path) > max {
		return fmt.Errorf("%w: %s is %d bytes, and %s allows a socket path of at most %d: use a shorter --home",
			ErrSocketPathTooLong, path, len(path), goos, max)
	}
	return nil
}

// noDaemon says whether err, from connecting to the control socket at
// path, means that no daemon runs there: no socket file, or a stale one
// that a process which died left behind (connection refused). The file is
// looked up too, because systems disagree on the error that connecting to a
// missing socket returns.
func noDaemon(path string, err error) bool {
	if errors.Is(err, os.ErrNotExist) || connRefused(err) {
		return true
	}
	_, serr := os.Lstat(path)
	return errors.Is(serr, os.ErrNotExist)
}

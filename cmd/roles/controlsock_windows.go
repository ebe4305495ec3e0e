package roles

import (
	"errors"
	"syscall"
)

// restrictSocket does nothing on Windows, and says so: Windows has no
// mode bits (os.Chmod only sets or clears the read-only attribute). Who
// may connect to an AF_UNIX socket there is decided by the socket file's
// ACL, which it inherits from the home directory. The default home,
// %AppData%\tunnel, is inside the user's profile, whose ACL admits the
// user, SYSTEM and the Administrators group only, as the owner and root
// on Linux. A --home elsewhere (C:\tunnel, say) inherits that directory's
// ACL instead, which may admit every local user: README says so.
func restrictSocket(string) error { return nil }

// wsaeConnRefused is WSAECONNREFUSED, what Winsock returns for a socket
// file nothing listens on; the syscall package's ECONNREFUSED is a value
// Go invented for Windows, which no Winsock call returns.
const wsaeConnRefused = syscall.Errno(10061)

// connRefused: a socket file nothing listens on any more.
func connRefused(err error) bool {
	return errors.Is(err, wsaeConnRefused) || errors.Is(err, syscall.ECONNREFUSED)
}

package identity

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// ErrExposed is wrapped by ReadPrivateFile's refusal of a key file that
// its mode opens to group or others.
var ErrExposed = errors.New("private key file accessible to others")

// ReadPrivateFile reads a private key file, refusing it if its mode
// grants any permission to group or others (mode&0o077 != 0), as ssh
// refuses such an identity file: a key others could read may have been
// copied, and one they could write may have been replaced. The refusal
// wraps ErrExposed and gives the command that fixes it. The mode checked
// is that of the file read (fstat of the open file, not a second lookup
// of the path). Windows has no such mode bits, so there the check is
// skipped (ModeExposes). A missing file is reported with fs.ErrNotExist.
func ReadPrivateFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if ModeExposes(runtime.GOOS, st.Mode()) {
		return nil, fmt.Errorf("%w (mode %04o); fix it with: chmod 600 %s", ErrExposed, st.Mode().Perm(), shellQuote(path))
	}
	return io.ReadAll(f)
}

// ModeExposes says whether mode, of a file on goos, grants any permission
// to group or others. On Windows it never does: there are no mode bits
// (Go reports 0666, or 0444 for a read-only file, whoever may read it),
// and what protects a file is its ACL, inherited from its directory: in
// the default home, %AppData%\tunnel, the user profile's, which admits
// the user, SYSTEM and Administrators only.
func ModeExposes(goos string, mode fs.FileMode) bool {
	return goos != "windows" && mode.Perm()&0o077 != 0
}

// shellQuote returns path as one word of a POSIX shell command, so that
// the command in an error can be pasted as is.
func shellQuote(path string) string {
	safe := func(r rune) bool {
		return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:,@%=", r)
	}
	if strings.HasPrefix(path, "-") {
		path = "./" + path // not an option of chmod
	}
	if path != "" && strings.IndexFunc(path, func(r rune) bool { return !safe(r) }) < 0 {
		return path
	}
	return "'" + strings.ReplaceAll(path, "'", `'\''`) + "'"
}

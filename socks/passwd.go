package socks

// The password file: who may use a socksd that listens beyond loopback.
// Its format is Apache's htpasswd with bcrypt hashes only, so that
// `htpasswd -B` makes entries as `tunnel socksd passwd` does:
//
//	# a comment: lines whose first byte is '#', and blank lines, are skipped
//	alice:$2y$05$…53 more characters of salt and hash…
//	bob:$2a$10$…
//
// One entry per line, USER ':' HASH, nothing else (no spaces; a CR before
// the LF is dropped). USER is 1..255 bytes with no ':' and no control
// character, since RFC 1929 sends it in at most 255 bytes; each USER
// appears once. HASH is bcrypt's 60-character modular crypt string,
// $2a$, $2b$ or $2y$ (the same algorithm, as Go and htpasswd compute it),
// with a cost of 4..14. Any other line is refused with its number: a file
// half understood would let in, or lock out, someone its owner did not
// mean to.
//
// bcrypt reads at most 72 bytes of a password, so passwords are 1..72
// bytes. The file holds salted hashes, never a password, yet a hash can
// be attacked offline: it must be readable by its owner only.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

const (
	// PasswordFileName is the password file's name in a node's home,
	// where `tunnel socksd passwd` writes by default.
	PasswordFileName = "socksd.auth"

	// MaxHashCost bounds the work one check costs: cost 14 is about a
	// second of one core on a current machine (cost 10, the default, is
	// 60 ms; every step doubles it). A costlier hash would make each login
	// slow and let a few strangers keep the checking slots busy.
	MaxHashCost = 14
	// MinHashCost is bcrypt's least (htpasswd -B uses 5 unless told).
	MinHashCost = bcrypt.MinCost
	// MaxPasswordLen is bcrypt's limit: it ignores what follows.
	MaxPasswordLen = 72
	// MaxUsernameLen is RFC 1929's limit.
	MaxUsernameLen = 255
	// maxPasswordFile bounds what loading reads: ten thousand entries fit.
	maxPasswordFile = 1 << 20
)

// Passwords are the entries of a password file: user → bcrypt hash.
type Passwords struct {
	hashes map[string][]byte
	cost   int // of the first entry: what checking an unknown user costs
}

// Users returns how many users the file lists.
func (p *Passwords) Users() int { return len(p.hashes) }

// LoadPasswords reads the password file at path. It refuses a file that
// others may read or write (saying the chmod to run; where mode bits
// exist: identity.ModeExposes), a file with no entry,
// and any line that is not an entry, a comment or blank (naming the line).
func LoadPasswords(path string) (*Passwords, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("password file %s is not a regular file", path)
	}
	if identity.ModeExposes(runtime.GOOS, fi.Mode()) {
		return nil, fmt.Errorf("password file %s may be read or written by others (mode %04o): run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	if fi.Size() > maxPasswordFile {
		return nil, fmt.Errorf("password file %s is %d bytes, more than the %d a password file may have", path, fi.Size(), maxPasswordFile)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("password file: %w", err)
	}
	entries, err := parsePasswords(data)
	if err != nil {
		return nil, fmt.Errorf("password file %s: %w", path, err)
	}
	p := &Passwords{hashes: make(map[string][]byte, len(entries))}
	for _, e := range entries {
		if e.user == "" {
			continue // a comment or a blank line
		}
		if len(p.hashes) == 0 {
			p.cost, _ = bcrypt.Cost(e.hash)
		}
		p.hashes[e.user] = e.hash
	}
	if len(p.hashes) == 0 {
		return nil, fmt.Errorf("password file %s lists no user: add one with 'tunnel socksd passwd --auth %s USER'", path, path)
	}
	return p, nil
}

// passwordLine is one line of a password file: an entry (user set), or a
// comment or blank line kept as it is (text).
type passwordLine struct {
	user string
	hash []byte
	text string
}

// parsePasswords parses a whole file: every line, entries and the rest.
func parsePasswords(data []byte) ([]passwordLine, error) {
	var lines []passwordLine
	seen := make(map[string]int)
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxPasswordFile)
	for n := 1; sc.Scan(); n++ {
		text := strings.TrimSuffix(sc.Text(), "\r")
		if text == "" || text[0] == '#' {
			lines = append(lines, passwordLine{text: text})
			continue
		}
		user, hash, err := parseEntry(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if first, dup := seen[user]; dup {
			return nil, fmt.Errorf("line %d: user %q is listed again (first on line %d)", n, user, first)
		}
		seen[user] = n
		lines = append(lines, passwordLine{user: user, hash: hash})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return lines, nil
}

func parseEntry(text string) (user string, hash []byte, err error) {
	user, h, ok := strings.Cut(text, ":")
	if !ok {
		return "", nil, errors.New("not USER:HASH (htpasswd format)")
	}
	if err := CheckUsername(user); err != nil {
		return "", nil, err
	}
	hash = []byte(h)
	if !strings.HasPrefix(h, "$2a$") && !strings.HasPrefix(h, "$2b$") && !strings.HasPrefix(h, "$2y$") {
		return "", nil, fmt.Errorf("user %q: the password is not a bcrypt hash ($2y$…): make entries with 'tunnel socksd passwd' or 'htpasswd -B'", user)
	}
	cost, err := bcrypt.Cost(hash)
	if err != nil || len(hash) != 60 {
		return "", nil, fmt.Errorf("user %q: malformed bcrypt hash", user)
	}
	if cost > MaxHashCost {
		return "", nil, fmt.Errorf("user %q: bcrypt cost %d makes every check take seconds; use a cost of at most %d (htpasswd -B -C %d)", user, cost, MaxHashCost, MaxHashCost)
	}
	return user, hash, nil
}

// CheckUsername reports what makes name unusable as a username: it must
// be 1..255 bytes (RFC 1929), without ':' (the file's separator, and HTTP
// Basic's) or control characters.
func CheckUsername(name string) error {
	if name == "" || len(name) > MaxUsernameLen {
		return fmt.Errorf("username of %d bytes: want 1..%d", len(name), MaxUsernameLen)
	}
	for _, r := range name {
		if r == ':' || r < 0x20 || r == 0x7f {
			return fmt.Errorf("username %q: no ':' or control characters allowed", name)
		}
	}
	return nil
}

// CheckPassword reports what makes pw unusable as a password: empty, or
// longer than bcrypt reads.
func CheckPassword(pw string) error {
	if pw == "" || len(pw) > MaxPasswordLen {
		return fmt.Errorf("password of %d bytes: want 1..%d (bcrypt reads no more)", len(pw), MaxPasswordLen)
	}
	return nil
}

// SetPassword adds user to the password file at path, or replaces its
// entry, with a bcrypt hash of password at cost (0: bcrypt's default, 10;
// else MinHashCost..MaxHashCost). Other lines are kept as they are. The
// file is replaced atomically (a new file beside it, renamed over it) with
// mode 0600; if it exists and does not parse, nothing is written. It
// reports whether user was already listed.
func SetPassword(path, user, password string, cost int) (replaced bool, err error) {
	if err := CheckUsername(user); err != nil {
		return false, err
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	if cost < MinHashCost || cost > MaxHashCost {
		return false, fmt.Errorf("bcrypt cost %d: want %d..%d", cost, MinHashCost, MaxHashCost)
	}
	if err := CheckPassword(password); err != nil {
		return false, err
	}
	var lines []passwordLine
	switch data, err := os.ReadFile(path); {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return false, fmt.Errorf("password file: %w", err)
	default:
		if lines, err = parsePasswords(data); err != nil {
			return false, fmt.Errorf("password file %s: %w; fix or remove that line first", path, err)
		}
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		return false, err
	}
	var out bytes.Buffer
	for _, l := range lines {
		switch {
		case l.user == "":
			out.WriteString(l.text)
		case l.user == user:
			replaced = true
			fmt.Fprintf(&out, "%s:%s", user, hash)
		default:
			fmt.Fprintf(&out, "%s:%s", l.user, l.hash)
		}
		out.WriteByte('\n')
	}
	if !replaced {
		fmt.Fprintf(&out, "%s:%s\n", user, hash)
	}
	if err := identity.WriteFile(path, out.Bytes(), 0o600, true); err != nil {
		return replaced, fmt.Errorf("password file: %w", err)
	}
	return replaced, nil
}

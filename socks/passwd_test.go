package socks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// testHash is a bcrypt hash of pw at the cheapest cost, for tests.
func testHash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// writePasswords writes a password file of mode 0600 and returns its path.
func writePasswords(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), PasswordFileName)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadPasswords(t *testing.T) {
	a, b, c := testHash(t, "pa"), testHash(t, "pb"), testHash(t, "pc")
	// htpasswd -B writes $2y$, Go $2a$, OpenBSD $2b$: the same hash.
	b = "$2y$" + b[4:]
	c = "$2b$" + c[4:]
	path := writePasswords(t, "# socksd users\n\nalice:"+a+"\r\nbob:"+b+"\ncarol:"+c)
	pw, err := LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	if pw.Users() != 3 {
		t.Fatalf("%d users, want 3", pw.Users())
	}
	for user, p := range map[string]string{"alice": "pa", "bob": "pb", "carol": "pc"} {
		if err := bcrypt.CompareHashAndPassword(pw.hashes[user], []byte(p)); err != nil {
			t.Errorf("%s: %v", user, err)
		}
	}
}

// Anything but entries, comments and blank lines is refused, naming the
// line, and so are files others may read and files with no entry.
func TestLoadPasswordsRefuses(t *testing.T) {
	h := testHash(t, "pw")
	for _, tc := range []struct {
		name, text, want string
	}{
		{"no colon", "# ok\nalice " + h + "\n", "line 2: not USER:HASH"},
		{"plain password", "alice:secret\n", "line 1: user \"alice\": the password is not a bcrypt hash"},
		{"apr1 md5", "alice:$apr1$abc$def\n", "not a bcrypt hash"},
		{"sha1", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", "not a bcrypt hash"},
		{"crypt", "alice:rl0uE1EAm7yEI\n", "not a bcrypt hash"},
		{"truncated hash", "alice:" + h[:40] + "\n", "malformed bcrypt hash"},
		{"trailing space", "alice:" + h + " \n", "malformed bcrypt hash"},
		{"cost too high", "alice:" + h[:4] + "15" + h[6:] + "\n", "bcrypt cost 15"},
		{"cost too low", "alice:" + h[:4] + "03" + h[6:] + "\n", "malformed bcrypt hash"},
		{"empty user", ":" + h + "\n", "line 1: username of 0 bytes"},
		{"control character", "al\x01ice:" + h + "\n", "control characters"},
		{"long user", strings.Repeat("u", 256) + ":" + h + "\n", "username of 256 bytes"},
		{"twice", "alice:" + h + "\nbob:" + h + "\nalice:" + h + "\n", "line 3: user \"alice\" is listed again (first on line 1)"},
		{"no user", "# nobody yet\n\n", "lists no user"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadPasswords(writePasswords(t, tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to say %q", err, tc.want)
			}
		})
	}

	path := writePasswords(t, "alice:"+h+"\n")
	os.Chmod(path, 0o640)
	_, err := LoadPasswords(path)
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) || !strings.Contains(err.Error(), "0640") {
		t.Fatalf("mode 0640: %v, want the chmod to run", err)
	}
	if _, err := LoadPasswords(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Fatal("a missing file loaded")
	}
	if _, err := LoadPasswords(t.TempDir()); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a directory: %v", err)
	}
}

// SetPassword writes a 0600 file that a second call updates, keeping the
// other lines; over a file it cannot parse it writes nothing.
func TestSetPassword(t *testing.T) {
	path := filepath.Join(t.TempDir(), PasswordFileName)
	// (The cheapest cost: bcrypt's default takes seconds under -race.)
	if replaced, err := SetPassword(path, "alice", "first", MinHashCost); err != nil || replaced {
		t.Fatalf("first: replaced %v, %v", replaced, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	// An entry htpasswd made, and a comment, survive.
	data, _ := os.ReadFile(path)
	bob := "bob:$2y$" + testHash(t, "pb")[4:]
	os.WriteFile(path, append([]byte("# users of socksd\n"+bob+"\n"), data...), 0o600)
	if replaced, err := SetPassword(path, "alice", "second", MinHashCost); err != nil || !replaced {
		t.Fatalf("second: replaced %v, %v", replaced, err)
	}
	data, _ = os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[0] != "# users of socksd" || lines[1] != bob || !strings.HasPrefix(lines[2], "alice:$2a$04$") {
		t.Fatalf("file after the update:\n%s", data)
	}
	pw, err := LoadPasswords(path)
	if err != nil {
		t.Fatal(err)
	}
	if bcrypt.CompareHashAndPassword(pw.hashes["alice"], []byte("second")) != nil {
		t.Fatal("alice's new password does not match")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("%d files beside it, want the file alone (no temporary left)", len(entries))
	}

	os.WriteFile(path, []byte("alice:plain\n"), 0o600)
	if _, err := SetPassword(path, "bob", "pw", MinHashCost); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("over a bad file: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "alice:plain\n" {
		t.Fatalf("a bad file was changed: %q", data)
	}
	for _, bad := range [][2]string{{"a:b", "pw"}, {"", "pw"}, {"alice", ""}, {"alice", strings.Repeat("p", 73)}} {
		if _, err := SetPassword(path, bad[0], bad[1], MinHashCost); err == nil {
			t.Errorf("SetPassword(%q, %q) took it", bad[0], bad[1])
		}
	}
	if _, err := SetPassword(path, "bob", "pw", MaxHashCost+1); err == nil {
		t.Error("SetPassword took a cost past MaxHashCost")
	}
}

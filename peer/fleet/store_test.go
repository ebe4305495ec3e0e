package fleet

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

func TestInstallHeldFor(t *testing.T) {
	home := t.TempDir()
	fleet1, fleet2, self, other := newKey(t), newKey(t), newKey(t), newKey(t)
	now := time.Now()

	if held, err := Held(home); err != nil || len(held) != 0 {
		t.Fatalf("Held with nothing installed = %v, %v", held, err)
	}
	if _, err := For(home, fleet1.ID()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("For with nothing installed = %v, want fs.ErrNotExist", err)
	}

	forOther, err := Issue(fleet1, other.ID(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	err = Install(home, forOther, self.ID())
	if err == nil || !strings.Contains(err.Error(), "this credential is for "+other.ID().String()) {
		t.Fatalf("Install of another member's credential = %v", err)
	}
	expired, err := Issue(fleet1, self.ID(), time.Hour, now.Add(-2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := Install(home, expired, self.ID()); err == nil {
		t.Fatal("Install of an expired credential succeeded")
	}
	if _, err := os.Stat(filepath.Join(home, CertDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("refused installs wrote something: %v", err)
	}

	first, err := Issue(fleet1, self.ID(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	second, err := Issue(fleet1, self.ID(), 2*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	in2, err := Issue(fleet2, self.ID(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*Credential{first, in2, second} {
		if err := Install(home, c, self.ID()); err != nil {
			t.Fatal(err)
		}
	}

	dir := filepath.Join(home, CertDir)
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("credential directory: %v, %v; want mode 0700", st, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Errorf("credential directory holds %d files, want 2 (no temporary files left)", len(entries))
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}

	got, err := For(home, fleet1.ID())
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != second.Serial {
		t.Errorf("For returned serial %d, want the replacement %d", got.Serial, second.Serial)
	}
	if _, err := Verify(got.Wire(), fleet1.ID(), self.ID(), now); err != nil {
		t.Errorf("installed credential does not verify: %v", err)
	}

	held, err := Held(home)
	if err != nil {
		t.Fatal(err)
	}
	if len(held) != 2 || held[0].Fleet.String() > held[1].Fleet.String() {
		t.Fatalf("Held = %v, want two credentials sorted by fleet", held)
	}
	for _, c := range held {
		if c.Fleet != fleet1.ID() && c.Fleet != fleet2.ID() {
			t.Errorf("Held returned a credential of fleet %s", c.Fleet)
		}
	}

	// A damaged file is reported, by name, and the others still listed.
	garbage := filepath.Join(dir, newKey(t).ID().String()+".cert")
	if err := os.WriteFile(garbage, []byte("ssh-ed25519-cert-v01@openssh.com AAAAtruncated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(stray, []byte("hi\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	held, err = Held(home)
	if err == nil {
		t.Fatal("Held did not report the garbage file")
	}
	for _, name := range []string{garbage, stray} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("Held error %q does not name %s", err, name)
		}
	}
	if len(held) != 2 {
		t.Errorf("Held returned %d credentials beside the error, want 2", len(held))
	}
}

// A credential of one fleet filed under another's name would be sent to the
// other fleet's devices.
func TestForChecksFleet(t *testing.T) {
	home := t.TempDir()
	fleet1, fleet2, self := newKey(t), newKey(t), newKey(t)
	c, err := Issue(fleet2, self.ID(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(home, CertDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fleet1.ID().String()+".cert"), c.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := For(home, fleet1.ID()); err == nil {
		t.Fatal("For returned a credential of another fleet filed under this fleet's name")
	}
	if held, err := Held(home); err == nil || len(held) != 0 {
		t.Fatalf("Held = %v, %v; want the misfiled credential reported", held, err)
	}
}

func TestParseValidity(t *testing.T) {
	good := map[string]time.Duration{
		"30d":   30 * 24 * time.Hour,
		"1d":    24 * time.Hour,
		"2160h": DefaultValidity,
		"90m":   90 * time.Minute,
	}
	for in, want := range good {
		if got, err := ParseValidity(in); err != nil || got != want {
			t.Errorf("ParseValidity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "0d", "0s", "-1d", "-1h", "d", "1.5d", "30 d", "1w", "99999999999d"} {
		if _, err := ParseValidity(in); err == nil {
			t.Errorf("ParseValidity(%q) accepted", in)
		}
	}
}

func TestSaveReadState(t *testing.T) {
	fleetKey, _ := identity.Generate()
	member, _ := identity.Generate()
	now := time.Now()
	c, err := Issue(fleetKey, member.ID(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.cert")
	if err := Save(path, c); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("saved file: %v, %v; want mode 0644", fi, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := Read(f)
	if err != nil || got.Member != member.ID() || got.Fleet != fleetKey.ID() {
		t.Fatalf("Read: %+v, %v", got, err)
	}
	if _, err := Read(strings.NewReader(strings.Repeat("x", MaxFile+1))); !errors.Is(err, ErrBadCredential) {
		t.Fatalf("oversized input: %v, want ErrBadCredential", err)
	}
	for at, want := range map[time.Time]string{now: "valid", now.Add(-time.Hour): "not-yet-valid", now.Add(2 * time.Hour): "expired"} {
		if s := c.State(at); s != want {
			t.Errorf("State(%v) = %s, want %s", at, s, want)
		}
	}
}

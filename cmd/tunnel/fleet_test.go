package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

// runFleet runs the tunnel command line with home and stdin, and returns
// what it wrote to stdout and stderr.
func runFleet(t *testing.T, home, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter, app.Reader = &out, &errOut, strings.NewReader(stdin)
	err = app.Run(append([]string{"tunnel", "--home", home}, args...))
	return out.String(), errOut.String(), err
}

func isUsageError(err error) bool {
	var ue usageError
	return errors.As(err, &ue)
}

func TestFleetCLI(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	admin, member := t.TempDir(), t.TempDir()

	out, _, err := runFleet(t, admin, "", "fleet", "id")
	if err == nil || !strings.Contains(err.Error(), "tunnel fleet create") {
		t.Fatalf("fleet id before create: %v, want a hint to run 'tunnel fleet create'", err)
	}

	out, _, err = runFleet(t, admin, "", "fleet", "create")
	if err != nil {
		t.Fatal(err)
	}
	fleetID, err := identity.ParseID(strings.TrimSuffix(out, "\n"))
	if err != nil || strings.Count(out, "\n") != 1 {
		t.Fatalf("fleet create printed %q, want one line with the fleet ID: %v", out, err)
	}
	if out, _, err := runFleet(t, admin, "", "fleet", "id"); err != nil || out != fleetID.String()+"\n" {
		t.Fatalf("fleet id = %q, %v; want %s", out, err, fleetID)
	}

	keyBefore, err := os.ReadFile(filepath.Join(admin, fleet.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err = runFleet(t, admin, "", "fleet", "create")
	if err == nil || isUsageError(err) || out != "" {
		t.Fatalf("second fleet create: out %q err %v; want a plain error (exit 1) and no output", out, err)
	}
	if keyAfter, _ := os.ReadFile(filepath.Join(admin, fleet.KeyFile)); !bytes.Equal(keyBefore, keyAfter) {
		t.Fatal("second fleet create changed fleet.key")
	}

	out, _, err = runFleet(t, member, "", "id")
	if err != nil {
		t.Fatal(err)
	}
	memberID := strings.TrimSpace(out)

	credText, stderr, err := runFleet(t, admin, "", "fleet", "add", memberID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(credText, "ssh-ed25519-cert-v01@openssh.com ") || strings.Count(credText, "\n") != 1 {
		t.Fatalf("fleet add printed %q, want one certificate line", credText)
	}
	if !strings.Contains(stderr, "valid until") {
		t.Errorf("fleet add stderr %q does not say until when", stderr)
	}
	cred, err := fleet.Parse([]byte(credText))
	if err != nil {
		t.Fatal(err)
	}
	if cred.Fleet != fleetID || cred.Member.String() != memberID {
		t.Fatalf("credential of fleet %s for %s, want %s for %s", cred.Fleet, cred.Member, fleetID, memberID)
	}
	if d := time.Until(cred.ValidBefore); d < fleet.DefaultValidity-time.Minute || d > fleet.DefaultValidity {
		t.Errorf("default credential valid for %v, want %v", d, fleet.DefaultValidity)
	}

	// --out, with the flags after MEMBER_ID as the usage line shows them.
	certFile := filepath.Join(t.TempDir(), "member.cert")
	out, _, err = runFleet(t, admin, "", "fleet", "add", memberID, "--expires", "30d", "--out="+certFile)
	if err != nil || out != "" {
		t.Fatalf("fleet add --out: out %q err %v", out, err)
	}
	st, err := os.Stat(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("--out file mode %v, want 0644", st.Mode().Perm())
	}

	out, _, err = runFleet(t, member, "", "fleet", "join", certFile)
	if err != nil {
		t.Fatal(err)
	}
	joined, err := fleet.For(member, fleetID)
	if err != nil {
		t.Fatal(err)
	}
	if want := "joined fleet " + fleetID.String() + ", valid until " + joined.ValidBefore.Format(time.RFC3339) + "\n"; out != want {
		t.Fatalf("fleet join printed %q, want %q", out, want)
	}
	if d := time.Until(joined.ValidBefore); d < 30*24*time.Hour-time.Minute || d > 30*24*time.Hour {
		t.Errorf("--expires 30d credential valid for %v", d)
	}

	// The same fleet again, from standard input: replaces the first.
	if _, _, err := runFleet(t, member, credText, "fleet", "join", "-"); err != nil {
		t.Fatal(err)
	}
	if c, err := fleet.For(member, fleetID); err != nil || c.Serial != cred.Serial {
		t.Fatalf("after joining from stdin: %v, %v; want serial %d", c, err, cred.Serial)
	}

	out, _, err = runFleet(t, member, "", "fleet", "list")
	if err != nil {
		t.Fatal(err)
	}
	if want := fleetID.String() + " " + cred.ValidBefore.Format(time.RFC3339) + " valid\n"; out != want {
		t.Fatalf("fleet list = %q, want %q", out, want)
	}
	out, _, err = runFleet(t, member, "", "fleet", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []fleet.Summary
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("fleet list --json: %v\n%s", err, out)
	}
	if len(list) != 1 || list[0].Fleet != fleetID.String() || list[0].Member != memberID || list[0].Status != "valid" {
		t.Fatalf("fleet list --json = %+v", list)
	}

	// The admin's node is not the member: its own join is refused, and
	// nothing is installed.
	out, _, err = runFleet(t, admin, "", "fleet", "join", certFile)
	if err == nil || !strings.Contains(err.Error(), "this credential is for "+memberID) || out != "" {
		t.Fatalf("join of another node's credential: out %q err %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(admin, fleet.CertDir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused join wrote %s: %v", fleet.CertDir, err)
	}

	out, stderr, err = runFleet(t, t.TempDir(), "", "fleet", "list")
	if err != nil || out != "" || !strings.Contains(stderr, "tunnel fleet join") {
		t.Fatalf("fleet list with nothing held: out %q stderr %q err %v", out, stderr, err)
	}
}

func TestFleetCLIUsageErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	admin := t.TempDir()
	if _, _, err := runFleet(t, admin, "", "fleet", "create"); err != nil {
		t.Fatal(err)
	}
	member, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	id := member.ID().String()
	credText, _, err := runFleet(t, admin, "", "fleet", "add", id)
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(t.TempDir(), "garbage.cert")
	if err := os.WriteFile(garbage, []byte("this is not a credential\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := map[string]struct {
		stdin string
		args  []string
	}{
		"add without ID":            {"", []string{"fleet", "add"}},
		"add bad ID":                {"", []string{"fleet", "add", "not-a-node-id"}},
		"add ID with a typo":        {"", []string{"fleet", "add", "0" + id[1:]}},
		"add two IDs":               {"", []string{"fleet", "add", id, id}},
		"add --expires 0":           {"", []string{"fleet", "add", "--expires", "0", id}},
		"add --expires 0 after ID":  {"", []string{"fleet", "add", id, "--expires", "0"}},
		"add --expires -1h":         {"", []string{"fleet", "add", "--expires", "-1h", id}},
		"add --expires junk":        {"", []string{"fleet", "add", "--expires", "soon", id}},
		"add --expires 1.5d":        {"", []string{"fleet", "add", "--expires", "1.5d", id}},
		"add --expires no value":    {"", []string{"fleet", "add", id, "--expires"}},
		"add unknown flag":          {"", []string{"fleet", "add", "--bogus", "1", id}},
		"add unknown flag after ID": {"", []string{"fleet", "add", id, "--bogus", "1"}},
		"join garbage file":         {"", []string{"fleet", "join", garbage}},
		"join garbage stdin":        {"garbage\n", []string{"fleet", "join", "-"}},
		"join truncated":            {credText[:len(credText)/2], []string{"fleet", "join", "-"}},
		"join empty":                {"", []string{"fleet", "join", "-"}},
		"join nothing":              {"", []string{"fleet", "join"}},
		"create with args":          {"", []string{"fleet", "create", "x"}},
		"list with args":            {"", []string{"fleet", "list", "x"}},
		"unknown subcommand":        {"", []string{"fleet", "revoke"}},
	}
	for name, tc := range cases {
		home := t.TempDir()
		out, _, err := runFleet(t, home, tc.stdin, tc.args...)
		if !isUsageError(err) {
			t.Errorf("%s: err = %v, want a usage error (exit 2)", name, err)
		}
		if out != "" {
			t.Errorf("%s: printed %q", name, out)
		}
		if entries, _ := os.ReadDir(home); len(entries) != 0 {
			t.Errorf("%s: wrote %d files in the home", name, len(entries))
		}
	}
}

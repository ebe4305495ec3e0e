package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/resolver/names"
)

// The admin signs names, the member imports them; every bad input is a
// usage error (exit 2) that writes nothing.
func TestNameCLI(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	admin, member, device := t.TempDir(), t.TempDir(), t.TempDir()
	must := func(home, stdin string, args ...string) string {
		t.Helper()
		out, stderr, err := runFleet(t, home, stdin, args...)
		if err != nil {
			t.Fatalf("%v: %v (stderr %q)", args, err, stderr)
		}
		return out
	}
	usage := func(home, stdin, want string, args ...string) {
		t.Helper()
		out, _, err := runFleet(t, home, stdin, args...)
		if !isUsageError(err) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%v: out %q err %v; want a one-line usage error (exit 2) saying %q", args, out, err, want)
		}
	}
	dev := strings.TrimSpace(must(device, "", "id"))
	must(admin, "", "fleet", "create")
	memberID := strings.TrimSpace(must(member, "", "id"))
	must(member, must(admin, "", "fleet", "add", memberID), "fleet", "join", "-")

	// Pet names.
	usage(member, "", "is a device ID", "name", "add", dev, dev)
	usage(member, "", "only letters, digits and hyphens", "name", "add", "my.pi", dev)
	usage(member, "", "hyphen", "name", "add", "pi-", dev)
	usage(member, "", "ID", "name", "add", "pi", "not-an-id")
	usage(member, "", "needs NAME and ID", "name", "add", "pi")
	usage(member, "", "shed", "name", "rm", "shed")
	if _, err := os.Stat(filepath.Join(member, names.LocalFile)); !os.IsNotExist(err) {
		t.Fatalf("refused commands wrote the names file: %v", err)
	}
	must(member, "", "name", "add", "Pi", strings.ToUpper(dev)+".tunnel")
	if out := must(member, "", "name", "list"); out != "pi "+dev+" local\n" {
		t.Fatalf("name list = %q", out)
	}

	// Fleet names: the admin's list, exported signed.
	usage(admin, "", "is a device ID", "fleet", "names", "add", dev, dev)
	usage(admin, "", "not one of", "fleet", "names", "rm", "garage")
	usage(admin, "", `fleet names list takes no arguments, got "x"`, "fleet", "names", "list", "x")
	usage(admin, "", `fleet names export takes no arguments, got "x"`, "fleet", "names", "export", "x")
	if _, _, err := runFleet(t, admin, "", "fleet", "names", "export"); err == nil || isUsageError(err) {
		t.Fatalf("export before any name: %v, want a plain error", err)
	}
	must(admin, "", "fleet", "names", "add", "garage", dev)
	must(admin, "", "fleet", "names", "add", "pi", dev)
	must(admin, "", "fleet", "names", "add", "shed", dev)
	must(admin, "", "fleet", "names", "rm", "shed")
	if out := must(admin, "", "fleet", "names", "list"); out != "garage "+dev+"\npi "+dev+"\n" {
		t.Fatalf("fleet names list = %q", out)
	}
	v1 := must(admin, "", "fleet", "names", "export")

	// The member imports it; its own pi shadows the fleet's.
	must(member, v1, "name", "import", "-")
	var list []names.Entry
	if err := json.Unmarshal([]byte(must(member, "", "name", "list", "--json")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].Name != "garage" || list[0].Source != "fleet" || list[2].Name != "pi" || list[2].ShadowedBy != "local" {
		t.Fatalf("name list --json = %+v", list)
	}
	if out := must(member, "", "name", "list"); !strings.Contains(out, "pi "+dev+" fleet ") || !strings.Contains(out, "(shadowed by local)") {
		t.Fatalf("name list does not say the fleet's pi is shadowed:\n%s", out)
	}

	held := filepath.Join(member, names.FleetDir)
	before := dirContents(t, held)
	usage(member, strings.Replace(v1, "name garage", "name garagf", 1), "signature does not verify", "name", "import", "-")
	usage(member, v1[:len(v1)/2], "bad signed name list", "name", "import", "-")
	usage(member, "", "no such file", "name", "import", filepath.Join(t.TempDir(), "missing"))
	usage(member, "", "needs one FILE", "name", "import")
	// Another fleet's names: signed right, but not the fleet this node joined.
	other := t.TempDir()
	must(other, "", "fleet", "create")
	must(other, "", "fleet", "names", "add", "garage", dev)
	usage(member, must(other, "", "fleet", "names", "export"), "holds no credential", "name", "import", "-")
	// A newer list replaces; the older one is then refused.
	must(admin, "", "fleet", "names", "rm", "pi")
	v2 := must(admin, "", "fleet", "names", "export")
	must(member, v2, "name", "import", "-")
	after := dirContents(t, held)
	usage(member, v1, "older", "name", "import", "-")
	if !bytes.Equal(after, dirContents(t, held)) || bytes.Equal(before, after) {
		t.Fatal("refused imports changed the imported names, or the newer one did not")
	}

	// A damaged fleet.names is an error, not an empty list signed over it.
	os.WriteFile(filepath.Join(admin, fleet.NamesFile), []byte("garbage\n"), 0o600)
	if _, _, err := runFleet(t, admin, "", "fleet", "names", "add", "x", dev); err == nil || !strings.Contains(err.Error(), "bad signed name list") {
		t.Fatalf("fleet names add over a damaged list: %v", err)
	}
}

// dirContents is every file of dir, concatenated in name order.
func dirContents(t *testing.T, dir string) []byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(e.Name() + "\n")
		b.Write(data)
	}
	return b.Bytes()
}

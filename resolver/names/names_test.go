package names

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

func newKey(t *testing.T) *identity.Key {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// joined makes home a member of a new fleet and returns the fleet key.
func joined(t *testing.T, home string) *identity.Key {
	t.Helper()
	node, err := identity.LoadOrCreate(home)
	if err != nil {
		t.Fatal(err)
	}
	fk := newKey(t)
	c, err := fleet.Issue(fk, node.ID(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := fleet.Install(home, c, node.ID()); err != nil {
		t.Fatal(err)
	}
	return fk
}

// signed is a list of fk's fleet with serial and the given names.
func signed(t *testing.T, fk *identity.Key, serial uint64, names map[string]identity.ID) []byte {
	t.Helper()
	l := &fleet.NameList{Fleet: fk.ID(), Serial: serial, Issued: time.Now()}
	for n, id := range names {
		if err := l.Set(n, id); err != nil {
			t.Fatal(err)
		}
	}
	b, err := l.Sign(fk)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func lookup(t *testing.T, home, name string) (identity.ID, bool) {
	t.Helper()
	return Open(home, zerolog.Nop()).Lookup(name)
}

func TestAddRemove(t *testing.T) {
	home := t.TempDir()
	a, b := newKey(t).ID(), newKey(t).ID()
	if _, err := Add(home, a.String(), a); !errors.Is(err, identity.ErrBadPetName) {
		t.Fatalf("Add of a name that is an ID: %v, want ErrBadPetName", err)
	}
	if _, err := Add(home, "a.b", a); !errors.Is(err, identity.ErrBadPetName) {
		t.Fatalf("Add of a malformed name: %v", err)
	}
	if _, err := os.Stat(filepath.Join(home, LocalFile)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused adds wrote the names file: %v", err)
	}
	if prev, err := Add(home, "Garage", a); err != nil || !prev.IsZero() {
		t.Fatalf("Add = %s, %v", prev, err)
	}
	if prev, err := Add(home, "garage", b); err != nil || prev != a {
		t.Fatalf("Add over a name = %s, %v; want the previous ID", prev, err)
	}
	if id, ok := lookup(t, home, "garage"); !ok || id != b {
		t.Fatalf("Lookup(garage) = %s, %v", id, ok)
	}
	if st, err := os.Stat(filepath.Join(home, LocalFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("names file: %v, %v", st, err)
	}
	if _, err := Remove(home, "shed"); !errors.Is(err, ErrUnknownName) {
		t.Fatalf("Remove of an unknown name: %v, want ErrUnknownName", err)
	}
	if id, err := Remove(home, "GARAGE"); err != nil || id != b {
		t.Fatalf("Remove = %s, %v", id, err)
	}
	if _, ok := lookup(t, home, "garage"); ok {
		t.Fatal("a removed name still resolves")
	}
}

func TestShadowing(t *testing.T) {
	home := t.TempDir()
	f1, f2 := joined(t, home), joined(t, home)
	if f2.ID().String() < f1.ID().String() {
		f1, f2 = f2, f1 // f1 sorts first
	}
	mine, first, second := newKey(t).ID(), newKey(t).ID(), newKey(t).ID()
	if _, err := Import(home, signed(t, f2, 1, map[string]identity.ID{"garage": second, "nas": second, "shed": second})); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(home, signed(t, f1, 1, map[string]identity.ID{"garage": first, "nas": first})); err != nil {
		t.Fatal(err)
	}
	if _, err := Add(home, "garage", mine); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]identity.ID{"garage": mine, "nas": first, "shed": second} {
		if id, ok := lookup(t, home, name); !ok || id != want {
			t.Errorf("Lookup(%s) = %s, %v; want %s", name, id, ok, want)
		}
	}
	list, err := List(home)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Name+" "+e.Source+" "+e.Fleet+" by:"+e.ShadowedBy)
	}
	want := []string{
		"garage local  by:",
		"garage fleet " + f1.ID().String() + " by:local",
		"garage fleet " + f2.ID().String() + " by:local",
		"nas fleet " + f1.ID().String() + " by:",
		"nas fleet " + f2.ID().String() + " by:" + f1.ID().String(),
		"shed fleet " + f2.ID().String() + " by:",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("List:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestImport(t *testing.T) {
	home := t.TempDir()
	fk := joined(t, home)
	a, b := newKey(t).ID(), newKey(t).ID()
	path := filepath.Join(home, FleetDir, fk.ID().String()+".signed")

	stranger := newKey(t)
	if _, err := Import(home, signed(t, stranger, 1, map[string]identity.ID{"garage": a})); !errors.Is(err, ErrNotJoined) {
		t.Fatalf("import of a fleet not joined: %v, want ErrNotJoined", err)
	}
	v5 := signed(t, fk, 5, map[string]identity.ID{"garage": a, "nas": a})
	tampered := bytes.Replace(v5, []byte(a.String()), []byte(b.String()), 1)
	if _, err := Import(home, tampered); !errors.Is(err, fleet.ErrBadNames) {
		t.Fatalf("import of a tampered list: %v, want ErrBadNames", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused imports wrote %s: %v", path, err)
	}
	if res, err := Import(home, v5); err != nil || res.Previous != 0 || res.Unchanged {
		t.Fatalf("Import v5 = %+v, %v", res, err)
	}
	if res, err := Import(home, v5); err != nil || !res.Unchanged {
		t.Fatalf("Import v5 again = %+v, %v; want unchanged", res, err)
	}
	// A later list replaces the fleet's names: nas is gone.
	v6 := signed(t, fk, 6, map[string]identity.ID{"garage": b})
	if res, err := Import(home, v6); err != nil || res.Previous != 5 {
		t.Fatalf("Import v6 = %+v, %v", res, err)
	}
	if id, ok := lookup(t, home, "garage"); !ok || id != b {
		t.Fatalf("garage after v6 = %s, %v", id, ok)
	}
	if _, ok := lookup(t, home, "nas"); ok {
		t.Fatal("nas, dropped by v6, still resolves")
	}
	for what, doc := range map[string][]byte{
		"older serial":             v5,
		"same serial, other names": signed(t, fk, 6, map[string]identity.ID{"garage": a}),
	} {
		if _, err := Import(home, doc); !errors.Is(err, ErrRollback) {
			t.Errorf("%s: %v, want ErrRollback", what, err)
		}
	}
	if held, err := os.ReadFile(path); err != nil || !bytes.Equal(held, v6) {
		t.Fatalf("refused imports changed %s: %v", path, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, %v", path, st, err)
	}
}

func TestCorrupt(t *testing.T) {
	home := t.TempDir()
	fk := joined(t, home)
	a := newKey(t).ID()
	if _, err := Import(home, signed(t, fk, 1, map[string]identity.ID{"nas": a})); err != nil {
		t.Fatal(err)
	}
	garbage := []byte("garage " + a.String() + "\nthis line is not a name\n")
	localPath := filepath.Join(home, LocalFile)
	if err := os.WriteFile(localPath, garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Add(home, "shed", a); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("Add over a damaged file: %v, want ErrCorrupt naming line 2", err)
	}
	if _, err := Remove(home, "garage"); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Remove from a damaged file: %v, want ErrCorrupt", err)
	}
	if data, _ := os.ReadFile(localPath); !bytes.Equal(data, garbage) {
		t.Fatal("a damaged names file was rewritten")
	}
	// The damaged file gives no names, the others still do.
	if _, ok := lookup(t, home, "garage"); ok {
		t.Error("a name of a damaged file resolves")
	}
	if id, ok := lookup(t, home, "nas"); !ok || id != a {
		t.Error("an imported name stopped resolving because the pet names file is damaged")
	}
	list, err := List(home)
	if !errors.Is(err, ErrCorrupt) || len(list) != 1 {
		t.Fatalf("List = %v, %v; want the imported name and ErrCorrupt", list, err)
	}
	// A damaged import blocks imports of its fleet (its serial guards
	// against rollback) and is reported; nothing panics.
	fleetPath := filepath.Join(home, FleetDir, fk.ID().String()+".signed")
	if err := os.WriteFile(fleetPath, []byte("tunnel-names v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(home, signed(t, fk, 2, map[string]identity.ID{"nas": a})); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Import over a damaged list: %v, want ErrCorrupt", err)
	}
	if _, ok := lookup(t, home, "nas"); ok {
		t.Error("a name of a damaged import resolves")
	}
	if err := os.WriteFile(filepath.Join(home, FleetDir, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := List(home); err == nil || !strings.Contains(err.Error(), "stray") {
		t.Fatalf("List with a stray file: %v", err)
	}
}

func TestReload(t *testing.T) {
	home := t.TempDir()
	fk := joined(t, home)
	a, b := newKey(t).ID(), newKey(t).ID()
	book := Open(home, zerolog.Nop())
	clock := time.Now()
	book.now = func() time.Time { return clock }
	check := func(name string, want identity.ID, wantOK bool) {
		t.Helper()
		if id, ok := book.Lookup(name); ok != wantOK || id != want {
			t.Fatalf("Lookup(%s) = %s, %v; want %s, %v", name, id, ok, want, wantOK)
		}
	}
	check("garage", identity.ID{}, false)
	if _, err := Add(home, "garage", a); err != nil {
		t.Fatal(err)
	}
	// Within the second, the book does not look at its files again.
	check("garage", identity.ID{}, false)
	clock = clock.Add(recheck)
	check("garage", a, true)
	if _, err := Import(home, signed(t, fk, 1, map[string]identity.ID{"nas": b})); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(recheck)
	check("nas", b, true)
	if _, err := Remove(home, "garage"); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(recheck)
	check("garage", identity.ID{}, false)

	// Once the files are older than settle and unchanged, a check reads
	// nothing: the snapshot stays the same object.
	clock = clock.Add(time.Hour)
	check("nas", b, true)
	snap := book.snap
	clock = clock.Add(recheck)
	check("nas", b, true)
	if book.snap != snap {
		t.Fatal("unchanged files were read again")
	}
}

package fleet

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// signedList is a list of two names signed by a new fleet key.
func signedList(t testing.TB) (*NameList, []byte) {
	t.Helper()
	key := newKey(t)
	l := &NameList{Fleet: key.ID(), Serial: 7, Issued: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	if err := l.Set("nas", newKey(t).ID()); err != nil {
		t.Fatal(err)
	}
	if err := l.Set("Garage", newKey(t).ID()); err != nil {
		t.Fatal(err)
	}
	signed, err := l.Sign(key)
	if err != nil {
		t.Fatal(err)
	}
	return l, signed
}

func TestNamesSignParse(t *testing.T) {
	l, signed := signedList(t)
	got, err := VerifyNames(signed, l.Fleet)
	if err != nil {
		t.Fatal(err)
	}
	if got.Serial != 7 || !got.Issued.Equal(l.Issued) || len(got.Entries) != 2 || got.Entries[0].Name != "garage" || got.Entries[1].Name != "nas" {
		t.Fatalf("parsed %+v from\n%s", got, signed)
	}
	if id, ok := got.Lookup("garage"); !ok || id != l.Entries[0].ID {
		t.Fatalf("Lookup(garage) = %s, %v", id, ok)
	}
	if _, ok := got.Lookup("shed"); ok {
		t.Fatal("Lookup(shed) found a name the list lacks")
	}
	lines := strings.Split(string(signed), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[0], "tunnel-names v1 fleet "+l.Fleet.String()+" serial 7 issued 2026-05-01T12:00:00Z") ||
		!strings.HasPrefix(lines[1], "name garage ") || !strings.HasPrefix(lines[3], "sig ") {
		t.Fatalf("signed list is not the documented format:\n%s", signed)
	}
}

func TestNamesRefused(t *testing.T) {
	l, signed := signedList(t)
	text := string(signed)
	other := newKey(t).ID()
	lines := strings.SplitAfter(text, "\n")
	tampered := map[string]string{
		"entry's ID changed":     strings.Replace(text, l.Entries[0].ID.String(), other.String(), 1),
		"entry's name changed":   strings.Replace(text, "name garage", "name garag3", 1),
		"entry removed":          lines[0] + lines[2] + lines[3],
		"entry added":            lines[0] + lines[1] + lines[2] + "name zz " + other.String() + "\n" + lines[3],
		"serial raised":          strings.Replace(text, "serial 7 ", "serial 8 ", 1),
		"serial with a zero":     strings.Replace(text, "serial 7 ", "serial 07 ", 1),
		"signature changed":      lines[0] + lines[1] + lines[2] + "sig " + strings.Repeat("A", 86) + "==\n",
		"entries out of order":   lines[0] + lines[2] + lines[1] + lines[3],
		"repeated entry":         lines[0] + lines[1] + lines[1] + lines[2] + lines[3],
		"CRLF line endings":      strings.ReplaceAll(text, "\n", "\r\n"),
		"upper-case name":        strings.Replace(text, "name garage", "name GARAGE", 1),
		"two spaces":             strings.Replace(text, "name garage ", "name garage  ", 1),
		"truncated":              text[:len(text)-10],
		"no final newline":       text[:len(text)-1],
		"no sig line":            lines[0] + lines[1] + lines[2],
		"version 2":              strings.Replace(text, " v1 ", " v2 ", 1),
		"empty":                  "",
		"garbage":                "hello\nworld\n",
		"a name that is an ID":   lines[0] + "name " + other.String() + " " + other.String() + "\n" + lines[3],
		"header fleet of other":  strings.Replace(text, l.Fleet.String(), other.String(), 1),
		"issued not UTC seconds": strings.Replace(text, "12:00:00Z", "12:00:00.5Z", 1),
	}
	for what, b := range tampered {
		got, err := ParseNames([]byte(b))
		if !errors.Is(err, ErrBadNames) || got != nil {
			t.Errorf("%s: ParseNames = %v, %v; want ErrBadNames", what, got, err)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error has more than one line: %q", what, err)
		}
	}
	if _, err := VerifyNames(signed, other); !errors.Is(err, ErrWrongFleet) {
		t.Errorf("VerifyNames for another fleet = %v, want ErrWrongFleet", err)
	}
	if _, err := ParseNames(bytes.Repeat([]byte("x"), MaxNamesFile+1)); !errors.Is(err, ErrBadNames) {
		t.Errorf("an oversized list: %v, want ErrBadNames", err)
	}
	if _, err := l.Sign(newKey(t)); err == nil {
		t.Error("Sign with a key that is not the fleet's succeeded")
	}
}

func TestNamesSetRemove(t *testing.T) {
	l := &NameList{}
	id := newKey(t).ID()
	if err := l.Set(id.String(), id); err == nil {
		t.Error("Set took a name that is an ID")
	}
	if err := l.Set("a.b", id); err == nil {
		t.Error("Set took a name with a dot")
	}
	if err := l.Set("pi", id); err != nil {
		t.Fatal(err)
	}
	if !l.Remove("PI") || l.Remove("pi") || len(l.Entries) != 0 {
		t.Fatalf("Remove: entries %v", l.Entries)
	}
}

func TestNamesFileSerials(t *testing.T) {
	home := t.TempDir()
	key := newKey(t)
	if _, err := ExportNames(home, key); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ExportNames before any name: %v, want ErrNotExist", err)
	}
	l, err := LoadNames(home, key)
	if err != nil || l.Serial != 0 || len(l.Entries) != 0 {
		t.Fatalf("LoadNames of a new fleet = %+v, %v", l, err)
	}
	if err := l.Set("garage", newKey(t).ID()); err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	first, err := SaveNames(home, key, l, now)
	if err != nil {
		t.Fatal(err)
	}
	if l.Serial != 1_800_000_000 {
		t.Fatalf("serial %d, want the Unix time", l.Serial)
	}
	// The same second again still raises the serial.
	if _, err := SaveNames(home, key, l, now); err != nil || l.Serial != 1_800_000_001 {
		t.Fatalf("second save: serial %d, %v", l.Serial, err)
	}
	exported, err := ExportNames(home, key)
	if err != nil || bytes.Equal(exported, first) {
		t.Fatalf("ExportNames = %v, want the second version", err)
	}
	if st, err := os.Stat(filepath.Join(home, NamesFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("names file: %v, %v", st, err)
	}
	// Another fleet's key does not read this list: it is not its own.
	if _, err := LoadNames(home, newKey(t)); !errors.Is(err, ErrWrongFleet) {
		t.Fatalf("LoadNames with another key: %v, want ErrWrongFleet", err)
	}
	// A damaged file is an error, never an empty list that a save would
	// then sign over the admin's names.
	os.WriteFile(filepath.Join(home, NamesFile), exported[:len(exported)/2], 0o600)
	if _, err := LoadNames(home, key); !errors.Is(err, ErrBadNames) {
		t.Fatalf("LoadNames of a damaged file: %v, want ErrBadNames", err)
	}
}

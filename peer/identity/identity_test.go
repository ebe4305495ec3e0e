package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestIDRoundTrip(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	s := k.ID().String()
	if len(s) != IDLen || s != strings.ToLower(s) {
		t.Fatalf("ID %q: want %d lowercase characters", s, IDLen)
	}
	for _, in := range []string{s, strings.ToUpper(s)} {
		id, err := ParseID(in)
		if err != nil {
			t.Fatalf("ParseID(%q): %v", in, err)
		}
		if id != k.ID() {
			t.Fatalf("ParseID(%q) = %v, want %v", in, id, k.ID())
		}
	}
}

func TestParseIDRejects(t *testing.T) {
	k, _ := Generate()
	s := k.ID().String()
	cases := map[string]string{
		"empty":       "",
		"short":       s[:51],
		"long":        s + "y",
		"bad char":    "0" + s[1:],
		"dot":         s[:51] + ".",
		"stray bits":  s[:51] + "9",
		"all letters": strings.Repeat("l", IDLen),
	}
	for name, in := range cases {
		if in == s {
			continue
		}
		if _, err := ParseID(in); err == nil {
			t.Errorf("%s: ParseID(%q) accepted", name, in)
		}
	}
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "home")
	k1, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v, want 0600", st.Mode().Perm())
	}
	k2, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if k1.ID() != k2.ID() {
		t.Fatal("second load made a new key")
	}
}

func TestLoadOrCreateConcurrent(t *testing.T) {
	dir := t.TempDir()
	var wg sync.WaitGroup
	ids := make([]ID, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := LoadOrCreate(dir)
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = k.ID()
		}()
	}
	wg.Wait()
	for _, id := range ids[1:] {
		if id != ids[0] {
			t.Fatal("concurrent creation produced two identities")
		}
	}
}

func TestCorruptKeyIsNotOverwritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, KeyFile)
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err == nil {
		t.Fatal("garbage key accepted")
	}
	b, _ := os.ReadFile(path)
	if string(b) != "garbage" {
		t.Fatal("corrupt key file was overwritten")
	}
}

func TestWeakIDsRejected(t *testing.T) {
	for i, w := range smallOrder {
		for _, sign := range []byte{0, 0x80} {
			var id ID = w
			id[31] |= sign
			if !id.Weak() {
				t.Errorf("entry %d (sign %#x) not weak", i, sign)
			}
			if _, err := ParseID(id.String()); err == nil {
				t.Errorf("ParseID accepted weak entry %d (sign %#x)", i, sign)
			}
			if _, err := IDFromPublicKey(id[:]); err == nil {
				t.Errorf("IDFromPublicKey accepted weak entry %d", i)
			}
		}
	}
	for range 100 {
		k, _ := Generate()
		if k.ID().Weak() {
			t.Fatal("a generated key is weak")
		}
	}
}

// fixedKey is a deterministic key, so that the committed corpus names it.
func fixedKey(seed byte) *Key {
	return FromPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
}

// keyFile is priv in the format WriteKeyFile writes, whatever its bytes.
func keyFile(tb testing.TB, priv ed25519.PrivateKey) []byte {
	tb.Helper()
	block, err := ssh.MarshalPrivateKey(priv, "fuzz")
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(block)
}

// A key file whose public half is not its seed's names a key no one holds
// (here another node's, and the zero key): refused, not taken as the ID.
func TestParseKeyFileForeignPublicHalf(t *testing.T) {
	own, other := fixedKey(1).PrivateKey(), fixedKey(2).PrivateKey()
	for name, pub := range map[string][]byte{"another key": other[32:], "zero key": make([]byte, 32)} {
		forged := append(bytes.Clone(own[:32]), pub...)
		if k, err := ParseKeyFile(keyFile(t, forged)); err == nil {
			t.Errorf("%s: ParseKeyFile took it as %s", name, k.ID())
		}
	}
	if k, err := ParseKeyFile(keyFile(t, own)); err != nil || k.ID() != fixedKey(1).ID() {
		t.Fatalf("the genuine file: %v", err)
	}
}

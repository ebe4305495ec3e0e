package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSSHConfigPrint(t *testing.T) {
	home := filepath.Join(t.TempDir(), "a home")
	out, _, err := runFleet(t, home, "", "ssh-config")
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	for _, want := range []string{
		"Host *.tunnel\n",
		"    ProxyCommand " + exe + ` --home "` + home + `" connect %h %p` + "\n",
		"    KnownHostsCommand " + exe + ` --home "` + home + `" known-hosts %H %p` + "\n",
		"    StrictHostKeyChecking yes\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ssh-config printed\n%s\nwant a line %q", out, want)
		}
	}
	out, _, err = runFleet(t, home, "", "ssh-config", "--relay", "relay.example:7443")
	if err != nil || !strings.Contains(out, "connect --relay relay.example:7443 %h %p") {
		t.Errorf("with --relay: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"ssh-config", "extra"}, {"ssh-config", "--relay", "no port"}} {
		if _, _, err := runFleet(t, home, "", args...); !isUsageError(err) {
			t.Errorf("%q: %v, want a usage error", args, err)
		}
	}
	if _, _, err := runFleet(t, filepath.Join(t.TempDir(), "a$b"), "", "ssh-config"); !isUsageError(err) || !strings.Contains(err.Error(), "cannot carry") {
		t.Errorf("a home with $ in its path: %v, want a usage error", err)
	}
}

func TestSSHConfigInstall(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(t.TempDir(), ".ssh")
	install := func() string {
		t.Helper()
		out, _, err := runFleet(t, home, "", "ssh-config", "--install", "--ssh-dir", dir)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	block, _, err := runFleet(t, home, "", "ssh-config")
	if err != nil {
		t.Fatal(err)
	}
	// A fresh ~/.ssh: both files made, 0600.
	install()
	cfg, conf := filepath.Join(dir, "config"), filepath.Join(dir, "tunnel.conf")
	for _, p := range []string{cfg, conf} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode %v; want 0600", p, err, fi.Mode())
		}
	}
	if b, _ := os.ReadFile(conf); string(b) != block {
		t.Fatalf("tunnel.conf:\n%s\nwant the printed block:\n%s", b, block)
	}
	if b, _ := os.ReadFile(cfg); !strings.Contains(string(b), "\nInclude tunnel.conf\n") {
		t.Fatalf("config:\n%s\nwant the Include line", b)
	}
	// Again: nothing changes, no backup.
	if out := install(); !strings.Contains(out, "nothing to change") {
		t.Fatalf("second install printed %q", out)
	}
	if _, err := os.Stat(cfg + ".tunnel-backup"); err == nil {
		t.Fatal("a backup was made when nothing changed")
	}

	// An existing config with hosts: the Include goes at the top, the old
	// file is kept as the backup, and its mode is kept.
	os.RemoveAll(dir)
	os.MkdirAll(dir, 0o700)
	user := "Host work\n    User me\n    HostName work.example\n"
	os.WriteFile(cfg, []byte(user), 0o644)
	os.WriteFile(conf, []byte("old block\n"), 0o600)
	install()
	b, _ := os.ReadFile(cfg)
	if !strings.HasPrefix(strings.SplitN(string(b), "\n", 2)[1], "Include tunnel.conf\n") || !strings.HasSuffix(string(b), user) {
		t.Fatalf("config after install:\n%s", b)
	}
	if fi, _ := os.Stat(cfg); fi.Mode().Perm() != 0o644 {
		t.Errorf("config mode %v, want its old 0644", fi.Mode())
	}
	if b, _ := os.ReadFile(cfg + ".tunnel-backup"); string(b) != user {
		t.Errorf("config backup %q, want the old config", b)
	}
	if b, _ := os.ReadFile(conf + ".tunnel-backup"); string(b) != "old block\n" {
		t.Errorf("tunnel.conf backup %q", b)
	}
	// An Include below a Host block applies to that host only: not ours.
	if includesTunnelConf([]byte("Host x\n  Include tunnel.conf\n")) || !includesTunnelConf([]byte("# hi\ninclude=~/.ssh/tunnel.conf\nHost x\n")) {
		t.Error("includesTunnelConf misreads where the Include is")
	}

	// An unreadable config: a usage error, nothing written.
	dir2 := filepath.Join(t.TempDir(), ".ssh")
	os.MkdirAll(filepath.Join(dir2, "config"), 0o700) // a directory where the file should be
	_, _, err = runFleet(t, home, "", "ssh-config", "--install", "--ssh-dir", dir2)
	if !isUsageError(err) || !strings.Contains(err.Error(), "config") {
		t.Fatalf("unreadable config: %v, want a usage error naming it", err)
	}
	if ents, _ := os.ReadDir(dir2); len(ents) != 1 {
		t.Fatalf("files written despite the error: %v", ents)
	}
}

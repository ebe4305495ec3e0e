//go:build linux

package e2e

// A build from a checkout says what it is: `make build` stamps the version
// (git describe) and the commit, whatever GOFLAGS says of Go's own VCS
// stamping.

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVersionStamped(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	git := func(args ...string) string {
		out, err := exec.Command("git", append([]string{"-C", root}, args...)...).Output()
		if err != nil {
			t.Skipf("not a git checkout (git %v: %v)", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	head := git("rev-parse", "HEAD")
	bin := filepath.Join(t.TempDir(), "tunnel")
	if r := runCmd(5*time.Minute, nil, nil, "make", "-s", "-C", root, "build", "BIN="+bin); r.Code != 0 {
		t.Fatalf("make build: %s", r)
	}
	describe := git("describe", "--tags", "--always", "--dirty")
	r := runCmd(10*time.Second, nil, nil, bin, "version")
	want := "tunnel " + describe + "\ncommit " + head + "\n"
	if r.Code != 0 || !strings.HasPrefix(string(r.Stdout), want) || !strings.Contains(string(r.Stdout), "\ngo     go1.") {
		t.Fatalf("tunnel version of a make build: want it to start %q, got %s", want, r)
	}
	if r := runCmd(10*time.Second, nil, nil, bin, "--version"); r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "tunnel version "+describe {
		t.Fatalf("tunnel --version: %s", r)
	}
	t.Logf("%s", r.Stdout)
}

package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

func TestVersionCommand(t *testing.T) {
	out, _, err := runFleet(t, t.TempDir(), "", "version")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "tunnel ") || !strings.HasPrefix(lines[1], "commit ") ||
		lines[2] != "go     "+runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH {
		t.Fatalf("tunnel version printed %q", out)
	}
	if _, _, err := runFleet(t, t.TempDir(), "", "version", "extra"); !isUsageError(err) {
		t.Fatalf("version with an argument: %v, want a usage error", err)
	}
}

func TestBuildInfoWrite(t *testing.T) {
	for _, c := range []struct {
		b    buildInfo
		want string
	}{
		{buildInfo{Version: "v1.2.3", Commit: "abc", Time: "2026-11-30T10:00:00Z", Go: "go1.26.8", Platform: "linux/arm64"},
			"tunnel v1.2.3\ncommit abc (2026-11-30T10:00:00Z)\ngo     go1.26.8 linux/arm64\n"},
		{buildInfo{Version: "(devel)", Commit: "abc", Time: "2026-11-30T10:00:00Z", Modified: true, Go: "go1.26.8", Platform: "linux/amd64"},
			"tunnel (devel)\ncommit abc (2026-11-30T10:00:00Z, with uncommitted changes)\ngo     go1.26.8 linux/amd64\n"},
		{buildInfo{Version: "unknown", Go: "go1.26.8", Platform: "windows/amd64"},
			"tunnel unknown\ncommit unknown (not built from a git checkout)\ngo     go1.26.8 windows/amd64\n"},
	} {
		var b bytes.Buffer
		if err := c.b.write(&b); err != nil || b.String() != c.want {
			t.Errorf("%+v printed %q, want %q", c.b, b.String(), c.want)
		}
	}
}

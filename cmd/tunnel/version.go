package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
)

// version and commit are stamped by the Makefile (-ldflags "-X
// main.version=$(git describe) -X main.commit=$(git rev-parse HEAD)"), so
// that a build from a checkout says what it is even where Go's own VCS
// stamping is off (-buildvcs=false). In a plain `go build` they are empty,
// and the build info's module version and vcs.revision stand in.
var version, commit string

// buildInfo is what this binary says about itself: its version, the commit
// it was built from (Go stamps it in every build from a checkout), and the
// Go toolchain and platform.
type buildInfo struct {
	Version  string
	Commit   string // the full revision, or "" if unknown
	Time     string // the commit's time, RFC 3339, or ""
	Modified bool   // built from a checkout with changes not committed
	Go       string
	Platform string
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: version, Commit: commit, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if b.Version == "" {
			b.Version = "unknown"
		}
		return b
	}
	if b.Version == "" {
		b.Version = info.Main.Version // "(devel)" for a build from a checkout
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Commit == "" {
				b.Commit = s.Value
			}
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// write prints b for a person, three lines.
func (b buildInfo) write(w io.Writer) error {
	commit := "unknown (not built from a git checkout)"
	if b.Commit != "" {
		commit = b.Commit
		if b.Time != "" {
			commit += " (" + b.Time
			if b.Modified {
				commit += ", with uncommitted changes"
			}
			commit += ")"
		} else if b.Modified {
			commit += " (with uncommitted changes)"
		}
	}
	_, err := fmt.Fprintf(w, "tunnel %s\ncommit %s\ngo     %s %s\n", b.Version, commit, b.Go, b.Platform)
	return err
}

func versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print this binary's version, the commit it was built from, and the Go version",
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return readBuildInfo().write(c.App.Writer)
		},
	}
}

//go:build linux

package main

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestPairRatios(t *testing.T) {
	run := func(sec, client, server float64) bulkRun {
		return bulkRun{bytes: 1e9, dur: time.Duration(sec * float64(time.Second)), cpu: map[string]float64{"client": client, "server": server}}
	}
	a := []bulkRun{run(2, 1, 1), run(4, 2, 2), run(1, 1, 1), run(1, 1, 1)}
	b := []bulkRun{run(1, 1, 3), run(4, 1, 2), run(1, 1, 1), run(1, 1, 1)}
	a[2].err = errors.New("failed") // a pair with a failed run counts for nothing
	b[3].bytes = 0                  // nor one that moved nothing
	got := pairRatios(a, b)
	want := map[string][]float64{
		"time":               {0.5, 1},
		"CPU socksd":         {1, 0.5},
		"CPU agent":          {3, 1},
		"CPU socksd + agent": {2, 0.75},
	}
	for name, w := range want {
		g := got[name]
		if len(g) != len(w) {
			t.Errorf("%s: %v, want %v", name, g, w)
			continue
		}
		for i := range w {
			if g[i] != w[i] {
				t.Errorf("%s: %v, want %v", name, g, w)
			}
		}
	}
	if r, ok := got["CPU relay"]; ok {
		t.Errorf("CPU relay %v for runs without a relay", r)
	}
	if c := ratioCell([]float64{1.2, 0.9, 1.0, 1.1}); c != "1.050 (0.900–1.100)" {
		t.Errorf("ratioCell = %q", c)
	}
	if c := ratioCell(nil); c != dash {
		t.Errorf("ratioCell(nil) = %q", c)
	}
}

func TestResolveAgainstRefusesNonsense(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Skip(err)
	}
	_, _, err = resolveAgainst("no-such-file-or-revision-of-tunnel", root, t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "neither a file nor a git revision") {
		t.Fatalf("err = %v", err)
	}
	bin := t.TempDir() + "/tunnel-old"
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, desc, err := resolveAgainst(bin, root, t.TempDir())
	if err != nil || got != bin || desc != bin {
		t.Fatalf("a file: %q, %q, %v", got, desc, err)
	}
}

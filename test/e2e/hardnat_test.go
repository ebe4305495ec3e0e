//go:build linux

package e2e

// Hard NATs (transport/hardnat.go, transport/portmap): a direct path when
// one side's NAT maps per destination, both ways round, measured on the
// namespace topology of netns_test.go.

import (
	"fmt"
	"testing"
	"time"
)

// hardNATTransfer is the transfer whose relay share is measured.
const hardNATTransfer = 32 << 20

// directTransfer waits for the direct path (timeout after the first ssh
// command), then downloads hardNATTransfer bytes and fails if the relay's
// interface carried 10 % of it or more. It logs the matrix cell: time to
// direct (from the start of the first command) and the relay's bytes.
func (w *natWorld) directTransfer(t *testing.T, cell string, timeout time.Duration) {
	t.Helper()
	start := time.Now()
	w.firstCommand(t)
	w.waitPath(t, "direct", timeout)
	toDirect := time.Since(start)
	rx0, tx0 := w.tp.Counters(t)
	r := w.ssh(120*time.Second, fmt.Sprintf("head -c %d /dev/zero", hardNATTransfer))
	if r.Code != 0 || len(r.Stdout) != hardNATTransfer {
		t.Fatalf("32 MiB download: %d bytes, %s", len(r.Stdout), r)
	}
	rx1, tx1 := w.tp.Counters(t)
	carried := (rx1 - rx0) + (tx1 - tx0)
	p, via := w.path(t)
	t.Logf("cell %s: path %s via %s, direct %v after the first command started; relay carried %d bytes of %d (%.2f%%)",
		cell, p, via, toDirect.Round(10*time.Millisecond), carried, hardNATTransfer, 100*float64(carried)/hardNATTransfer)
	if carried >= hardNATTransfer/10 {
		t.Fatalf("relay carried %d bytes (%.1f%%) of a direct transfer, want < 10%%", carried, 100*float64(carried)/hardNATTransfer)
	}
	if p != "direct" {
		t.Fatalf("path %q after the transfer, want direct", p)
	}
}

// Cone on one side, symmetric on the other, both ways round: the hard side
// opens many sockets, the easy side sprays ports.
func TestPathHardNAT(t *testing.T) {
	for _, c := range []struct{ dev, cli NATMode }{{NATCone, NATSymmetric}, {NATSymmetric, NATCone}} {
		cell := fmt.Sprintf("device-%s/client-%s", c.dev, c.cli)
		t.Run(cell, func(t *testing.T) {
			t.Parallel()
			w := startNATWorld(t, c.dev, c.cli)
			// One birthday attempt misses ~1.7 % of the time, and a
			// connection tries again 30 s later (hardnat.go's budget):
			// allow the second attempt.
			w.directTransfer(t, cell, 45*time.Second)
		})
	}
}

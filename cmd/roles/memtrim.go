package roles

import (
	"context"
	"time"
)

// A relay at rest holds its idle devices' registrations, a few KiB each
// (relaymem_test.go), and no connection for a leased device. Making a
// registration costs far more for as long as it lasts: the QUIC
// connection and its TLS handshake, some 50 KiB of heap per device. So
// a burst of registrations (the relay restarted, or a fleet's network
// came back, and every device registers within a second) grows the heap
// by tens of MiB for a moment. The garbage is collected soon, but the Go
// runtime keeps the pages and gives them back to the system slowly: after
// 300 devices registered in 0.3 s a relay's RSS stayed at 27 MiB for ten
// seconds, and took twenty to settle at 18 MiB (BENCHMARKS.md, round
// ten). A small VPS, or an operator reading RSS, should see the relay's
// real size once the burst is over.
//
// So once connections have ended in numbers and then stopped ending for
// a whole tick, the relay collects and returns the free pages at once.
// A steady churn of connections (lookups, say) never stops for a tick and
// never pays for it: its pages are reused. The cost, a collection and the
// release, comes at most once per tick, whoever causes the bursts.
const (
	trimTick = 2 * time.Second
	// trimAfterEnded: what fewer connections leave is not worth a
	// collection (about 3 MiB at this many).
	trimAfterEnded = 64
)

// trimAfterBursts calls free on a tick when ended (a count of the
// connections that have ended, which only grows) did not move since the
// tick before, and has grown by at least trimAfterEnded since free was
// last called (or since the start). It returns when ctx ends.
func trimAfterBursts(ctx context.Context, tick <-chan time.Time, ended func() uint64, free func()) {
	last := ended()
	base := last
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		n := ended()
		if n == last && n-base >= trimAfterEnded {
			free()
			base = n
		}
		last = n
	}
}

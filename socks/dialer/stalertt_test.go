package dialer

import (
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// After a freeze the smoothed RTT holds samples as long as the freeze;
// the checks' waits must not grow with it.
func TestStaleWaitsIgnoreFreezeSamples(t *testing.T) {
	for _, c := range []struct {
		st           quic.ConnectionStats
		stale, alive time.Duration
	}{
		{quic.ConnectionStats{MinRTT: time.Millisecond, SmoothedRTT: 70 * time.Second}, staleFloor, aliveFloor},
		{quic.ConnectionStats{MinRTT: 300 * time.Millisecond, SmoothedRTT: 320 * time.Millisecond}, 1200 * time.Millisecond, 1200 * time.Millisecond},
		{quic.ConnectionStats{SmoothedRTT: 70 * time.Second}, staleCeil, aliveCeil},
		{quic.ConnectionStats{}, staleFloor, aliveFloor},
	} {
		rtt := pathRTT(c.st)
		if s := clamp(staleRTTs*rtt, staleFloor, staleCeil); s != c.stale {
			t.Errorf("%+v: stale after %s, want %s", c.st, s, c.stale)
		}
		if a := clamp(aliveRTTs*rtt, aliveFloor, aliveCeil); a != c.alive {
			t.Errorf("%+v: alive wait %s, want %s", c.st, a, c.alive)
		}
	}
}

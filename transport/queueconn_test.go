package transport

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestBulkLosesNoPackets: loopback loses nothing on the wire, so a packet
// quic-go declares lost was dropped inside the receiving process, by
// quic-go's queue of unprocessed packets per connection, which its reader
// fills faster than the connection empties it unless the reader yields
// (yieldAfter). At one P, as the roles run while light, the reader would
// otherwise take everything queued before the connection ran at all.
func TestBulkLosesNoPackets(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, c := range pathModes {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			_, _, conn := modePair(t, ctx, c.mode)
			echoOver(t, ctx, conn, 8<<20, "bulk")
			st := conn.ConnectionStats()
			t.Logf("sent %d packets, lost %d", st.PacketsSent, st.PacketsLost)
			if st.PacketsLost != 0 {
				t.Errorf("%d of %d packets lost on loopback", st.PacketsLost, st.PacketsSent)
			}
		})
	}
}

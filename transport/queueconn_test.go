package transport

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// TestBulkLosesNoPackets: loopback loses nothing on the wire, so a packet
// quic-go declares lost was dropped inside the receiving process, by
// quic-go's queue of unprocessed packets per connection, which its reader
// fills faster than the connection empties it unless held back: at one P
// by yielding (yieldAfter), at several by counting (rxcredit.go).
func TestBulkLosesNoPackets(t *testing.T) {
	for _, procs := range []int{1, 2} {
		for _, c := range pathModes {
			t.Run(fmt.Sprintf("%dP/%s", procs, c.name), func(t *testing.T) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
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
}

package transport

import (
	"context"
	"testing"
	"time"
)

// Peers says how long ago a packet of the peer arrived on the path in use:
// just now right after traffic, and growing while the connection idles,
// on a relayed path and on a direct one.
func TestPeersSinceRx(t *testing.T) {
	for _, c := range pathModes {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			// Direct both ways before the first look: while the device
			// still sends relayed, "never" is the truth about the
			// client's direct path.
			_, cli, conn := modePair(t, ctx, c.mode)
			if c.mode == PathAuto {
				echoOver(t, ctx, conn, 1<<10, "on the direct path")
			}
			peer := func(what string) PeerInfo {
				t.Helper()
				ps := cli.Peers()
				if len(ps) != 1 || ps[0].Direct.IsValid() != (c.mode == PathAuto) {
					t.Fatalf("%s: peers %+v, want one %s", what, ps, c.name)
				}
				return ps[0]
			}
			if p := peer("busy"); p.SinceRx < 0 || p.SinceRx > 500*time.Millisecond {
				t.Fatalf("right after an echo: last packet %v ago, want under 500ms", p.SinceRx)
			}
			// Nothing is due on an idle connection for the keep-alive
			// period (15 s); disco pings are not its packets.
			const idle = 1200 * time.Millisecond
			time.Sleep(idle)
			p := peer("idle")
			if p.SinceRx < idle-200*time.Millisecond {
				t.Fatalf("after %v idle: last packet %v ago, want at least %v", idle, p.SinceRx, idle-200*time.Millisecond)
			}
			t.Logf("%s: after %v idle, last packet %v ago", c.name, idle, p.SinceRx)
			echoOver(t, ctx, conn, 1<<10, "after idling")
			if p := peer("busy again"); p.SinceRx < 0 || p.SinceRx > 500*time.Millisecond {
				t.Fatalf("right after another echo: last packet %v ago, want under 500ms", p.SinceRx)
			}
		})
	}
}

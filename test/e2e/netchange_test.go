//go:build linux

package e2e

// A client that changes networks mid-session: socksd runs behind nat2 with
// an ssh session open to the device through it, then the client's host
// leaves nat2's network for nat3's (another address, another NAT, another
// default route; netns_test.go, "Roaming"). Measured: whether the open
// session carries on, how long until a new ssh works, until socksd is
// registered again from its new address, and until the direct path runs
// through the new NAT.

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Bounds, from the moment the client's addresses changed. The node sees
// the change within its netlink debounce (transport's netChangeSettle,
// 100 ms), re-registers in one handshake and one request (two round
// trips), and probes at once: well under a second on this topology. The
// bounds leave room for a loaded two-core machine and for ssh itself
// (a new session is a TCP connect, a SOCKS exchange, a stream open and
// an ssh handshake, ~0.3 s here).
const (
	moveReregisterBound = 3 * time.Second
	moveNewSSHBound     = 5 * time.Second
	moveDirectBound     = 10 * time.Second
	// moveGiveUp caps each wait, so that a run without the fix measures
	// how far off it is instead of hanging.
	moveGiveUp = 30 * time.Second
)

func TestNetChangeClientMoves(t *testing.T) {
	needNetns(t)
	requireSystem(t)
	tp := NewTopology(t, NATCone, NATCone)
	tp.AddRoamNAT(t, NATCone)
	w := startNATWorldOn(t, tp)
	cliID := tunnelID(t, w.cliHome)
	w.firstCommand(t)
	w.waitPath(t, "direct", 15*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	// A session printing a line every 0.2 s for 12 s: the move happens
	// at its start, so it must live through all of it.
	const n = 60
	lines, wait := w.sshStream(t, ctx, fmt.Sprintf("for i in $(seq %d); do echo $i; sleep 0.2; done", n))
	select {
	case l := <-lines:
		if l != "1" {
			t.Fatalf("first line %q", l)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("session produced nothing")
	}
	regs := w.socksd.count("registered with relay")

	moved := time.Now()
	tp.MoveClient(t)
	t.Logf("client moved from %s (nat2 %s) to %s (nat3 %s)", tp.CliIP, tp.NAT2IP, tp.CliIP3, tp.NAT3IP)

	var wg sync.WaitGroup
	var sessionErr error
	var got int
	var maxGap time.Duration
	wg.Go(func() {
		got = 1
		last := moved
		for l := range lines {
			got++
			if now := time.Now(); now.Sub(last) > maxGap {
				maxGap = now.Sub(last)
			}
			last = time.Now()
			if l != strconv.Itoa(got) {
				sessionErr = fmt.Errorf("line %d is %q", got, l)
				return
			}
		}
		if err := wait(); err != nil {
			sessionErr = err
		}
	})

	// until runs check every 100 ms from the move and returns the time
	// since the move when it first held, or -1 after moveGiveUp.
	until := func(check func() bool) time.Duration {
		for time.Since(moved) < moveGiveUp {
			if check() {
				return time.Since(moved)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return -1
	}
	var newSSH, rereg, direct time.Duration
	wg.Go(func() {
		newSSH = until(func() bool {
			r := w.ssh(5*time.Second, "echo new")
			return r.Code == 0 && strings.TrimSpace(string(r.Stdout)) == "new"
		})
	})
	wg.Go(func() {
		rereg = until(func() bool {
			return w.socksd.count("registered with relay") > regs &&
				strings.Contains(w.socksd.logSince(0), `"observed":"`+tp.NAT3IP+":")
		})
	})
	wg.Go(func() {
		direct = until(func() bool {
			p := peerOf(t, w.devHome, cliID)
			return p.Path == "direct" && strings.HasPrefix(p.Via, tp.NAT3IP+":")
		})
	})
	wg.Wait()

	show := func(d time.Duration) string {
		if d < 0 {
			return "not within " + moveGiveUp.String()
		}
		return d.Round(10 * time.Millisecond).String()
	}
	t.Logf("after the move: new ssh worked after %s; socksd registered from nat3 after %s; device direct to the client via nat3 after %s; open session: %d/%d lines, longest gap %s, err %v",
		show(newSSH), show(rereg), show(direct), got, n, maxGap.Round(10*time.Millisecond), sessionErr)
	if sessionErr != nil || got != n {
		t.Errorf("the open session did not survive the move: %d/%d lines, %v\nsocksd:\n%s", got, n, sessionErr, tail(w.socksd.log(), 30, 8<<10))
	}
	for _, c := range []struct {
		what  string
		took  time.Duration
		bound time.Duration
	}{
		{"a new ssh", newSSH, moveNewSSHBound},
		{"re-registration from the new network", rereg, moveReregisterBound},
		{"a direct path through the new NAT", direct, moveDirectBound},
	} {
		if c.took < 0 || c.took > c.bound {
			t.Errorf("%s took %s after the move, want at most %s", c.what, show(c.took), c.bound)
		}
	}
	if t.Failed() {
		t.Logf("socksd:\n%s\ndevice:\n%s", tail(w.socksd.log(), 40, 12<<10), tail(w.device.log(), 30, 8<<10))
	}
}

// peerOf is what `tunnel status` of the node at home says of its
// connection to the peer id (the zero peerStatus if it has none).
func peerOf(t *testing.T, home, id string) peerStatus {
	t.Helper()
	r := runTunnel(10*time.Second, nil, "--home", home, "status", "--json")
	if r.Code != 0 {
		t.Errorf("tunnel status: %s", r)
		return peerStatus{}
	}
	var docs []struct {
		Peers []peerStatus `json:"peers"`
	}
	if err := json.Unmarshal(r.Stdout, &docs); err != nil {
		t.Errorf("tunnel status --json: %v\n%s", err, r.Stdout)
		return peerStatus{}
	}
	for _, d := range docs {
		for _, p := range d.Peers {
			if p.ID == id {
				return p
			}
		}
	}
	return peerStatus{}
}

//go:build linux

package e2e

// A separate rendezvous node (`tunnel relay`): surviving its death, and
// pinning its key with the ID@host:port form.

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// relayFixture is a `tunnel relay` plus a socksd that uses it.
type relayFixture struct {
	home, id  string
	port      int
	relay     *proc
	socksAddr string
	socksd    *proc
}

func startRelayFixture(t *testing.T) *relayFixture {
	t.Helper()
	f := &relayFixture{home: t.TempDir(), port: freePort(t, "udp")}
	f.id = tunnelID(t, f.home) // create the key before the relay starts
	f.relay = startTunnel(t, "relay", f.home, nil, "relay", "--listen", addr(f.port))
	socksPort := freePort(t, "tcp")
	f.socksAddr = addr(socksPort)
	f.socksd = startTunnel(t, "socksd", t.TempDir(), nil, "socksd", "--relay", addr(f.port), "--listen", f.socksAddr)
	if err := waitTCP(f.socksAddr, 15*time.Second, f.socksd); err != nil {
		t.Fatal(err)
	}
	return f
}

// publishSSH starts a device that publishes the shared sshd as port 22.
func publishSSH(t *testing.T, e *sharedEnv, name, relay string) (p *proc, id string) {
	t.Helper()
	home := t.TempDir()
	id = tunnelID(t, home)
	p = startTunnel(t, name, home, nil, "publish", "--relay", relay, "-public", strconv.Itoa(e.sshd.port)+":22")
	return p, id
}

func TestRelayRestart(t *testing.T) {
	e := getEnv(t)
	f := startRelayFixture(t)
	dev, devID := publishSSH(t, e, "publish", addr(f.port))
	host := devID + ".tunnel"
	proxy := ncProxy(f.socksAddr)

	if took, err := waitReachable(f.socksAddr, host, 22, 15*time.Second); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("device reachable through the separate relay after %s", took.Round(time.Millisecond))
	}
	if err := e.sshd.checkEcho(30*time.Second, nil, proxy, host, "before"); err != nil {
		t.Fatal(err)
	}

	f.relay.kill9()
	killed := time.Now()
	t.Logf("relay killed with SIGKILL (%s)", f.relay.exitDesc())
	time.Sleep(time.Second)

	relay2 := startTunnel(t, "relay-restarted", f.home, nil, "relay", "--listen", addr(f.port))
	restarted := time.Now()
	if id := tunnelID(t, f.home); id != f.id {
		t.Fatalf("relay ID changed across the restart: %s -> %s", f.id, id)
	}

	// Keep watching past the limit (up to observe) so that a failure says
	// whether recovery was merely slow or never came.
	const limit, observe = 30 * time.Second, 60 * time.Second
	attempts := 0
	var last error
	for {
		attempts++
		timeout := min(15*time.Second, max(observe-time.Since(restarted), 2*time.Second))
		last = e.sshd.checkEcho(timeout, nil, proxy, host, "after")
		if last == nil || time.Since(restarted) > observe {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	regs := func() string {
		return fmt.Sprintf("publish logged %q %d time(s), socksd %d time(s); the restarted relay logged %q %d time(s)", "registered with relay",
			dev.count("registered with relay"), f.socksd.count("registered with relay"), leaseBack, relay2.count(leaseBack))
	}
	if last != nil {
		t.Fatalf("ssh did not work again within %s of the relay restart (%d attempts; %s); last: %v", observe, attempts, regs(), last)
	}
	took := time.Since(restarted)
	t.Logf("ssh works again %s after the relay restart (%s after the kill, %d attempts; %s)",
		took.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), attempts, regs())
	if took > limit {
		t.Fatalf("ssh worked again only %s after the relay restart, want under %s", took.Round(time.Millisecond), limit)
	}

	// The device is back either by registering again (its keeps went
	// unanswered while the relay was down) or by its lease, which the
	// restarted relay, holding the same key, takes as its registration.
	if !registeredAgain(dev, 1, relay2, 5*time.Second) {
		t.Errorf("%s; want the device registered again, by a new registration or by its lease", regs())
	}
}

// leaseBack is what a relay logs when a device's lease registers it again
// (a relay that restarted).
const leaseBack = "registered again by its lease"

// registeredAgain waits until dev has registered more than before times,
// or relay (if not nil) logged that a lease registered a node again.
func registeredAgain(dev *proc, before int, relay *proc, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if dev.count("registered with relay") > before || (relay != nil && relay.count(leaseBack) > 0) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRelayIDPinning(t *testing.T) {
	e := getEnv(t)
	f := startRelayFixture(t)

	t.Run("right-id", func(t *testing.T) {
		dev, devID := publishSSH(t, e, "publish-pinned", f.id+"@"+addr(f.port))
		host := devID + ".tunnel"
		if _, err := waitReachable(f.socksAddr, host, 22, 15*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := e.sshd.checkEcho(30*time.Second, nil, ncProxy(f.socksAddr), host, "pinned"); err != nil {
			t.Fatal(err)
		}
		if !dev.waitLog("registered with relay", 1, 5*time.Second) {
			t.Errorf("publish never logged %q", "registered with relay")
		}
	})

	t.Run("wrong-id", func(t *testing.T) {
		wrongID := tunnelID(t, t.TempDir())
		dev, devID := publishSSH(t, e, "publish-wrong-relay-id", wrongID+"@"+addr(f.port))
		dev.allowExit() // giving up with a non-zero status is fine too

		// Wait for the complaint (or an exit), then give it a moment more to
		// (wrongly) register.
		start := time.Now()
		for time.Since(start) < 10*time.Second && !dev.exited() && len(complaints(dev)) == 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if d := 3*time.Second - time.Since(start); d > 0 {
			time.Sleep(d)
		}

		rep, err := socksConnect(f.socksAddr, devID+".tunnel", 22)
		if rep.Conn != nil {
			rep.Conn.Close()
		}
		if err != nil {
			t.Fatalf("CONNECT to the device: %v", err)
		}
		if rep.Code != repHostUnreachable {
			t.Errorf("device that pinned the wrong relay ID: reply %s, want 0x04 (it must not register)", replyName(rep.Code))
		}
		if n := dev.count("registered with relay"); n > 0 {
			t.Errorf("publish logged %q %d time(s) despite the wrong relay ID", "registered with relay", n)
		}
		if dev.exited() && dev.exitCode() == 0 {
			t.Errorf("publish exited with status 0 despite the wrong relay ID")
		}
		cs := complaints(dev)
		if len(cs) == 0 {
			t.Errorf("publish's log does not say why it cannot register (no warn/error line); log:\n%s", tail(dev.log(), 40, 8<<10))
		} else {
			t.Logf("publish says (%s): %s", dev.exitDesc(), cs[0])
			if !strings.Contains(strings.ToLower(strings.Join(cs, "\n")), "relay") {
				t.Errorf("publish's complaints do not mention the relay: %q", cs)
			}
		}
	})
}

// complaints are the warn/error/fatal lines of a process's log.
func complaints(p *proc) []string {
	var out []string
	for _, e := range parseLog(p.log()) {
		switch strings.ToLower(e.Level) {
		case "warn", "warning", "error", "fatal", "panic":
			out = append(out, e.Raw)
		}
	}
	return out
}

//go:build linux

package e2e

// SIGTERM and SIGINT end every long-running command cleanly: exit status 0
// within stopTimeout, idle or with a stream open through it.

import (
	"fmt"
	"syscall"
	"testing"
	"time"
)

// chain is relay + device + socksd(--relay), with the device's echo port
// reachable through socksd.
type chain struct {
	relay, publish, socksd *proc
	socksAddr, host        string
}

func startChain(t *testing.T, echoPort int) *chain {
	t.Helper()
	relayPort := freePort(t, "udp")
	c := &chain{}
	c.relay = startTunnel(t, "relay", t.TempDir(), nil, "relay", "--listen", addr(relayPort))
	devHome := t.TempDir()
	c.host = tunnelID(t, devHome) + ".tunnel"
	c.publish = startTunnel(t, "publish", devHome, nil, "publish", "--relay", addr(relayPort),
		"-public", fmt.Sprintf("127.0.0.1:%d:7001", echoPort))
	c.socksAddr = addr(freePort(t, "tcp"))
	c.socksd = startTunnel(t, "socksd", t.TempDir(), nil, "socksd", "--relay", addr(relayPort), "--listen", c.socksAddr)
	if err := waitTCP(c.socksAddr, 15*time.Second, c.socksd); err != nil {
		t.Fatal(err)
	}
	if _, err := waitReachable(c.socksAddr, c.host, 7001, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	return c
}

// openStream opens an echo stream through the chain and checks it works.
func (c *chain) openStream(t *testing.T) {
	t.Helper()
	rep, err := socksConnect(c.socksAddr, c.host, 7001)
	if err != nil || rep.Code != repSucceeded {
		t.Fatalf("CONNECT %s:7001: %v %s", c.host, err, replyName(rep.Code))
	}
	t.Cleanup(func() { rep.Conn.Close() })
	if _, err := rep.Conn.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := readLine(rep.Conn, 5*time.Second); line != "ping\n" {
		t.Fatalf("echo stream: %q %v", line, err)
	}
}

func TestSignals(t *testing.T) {
	echo, err := startTCPServer(echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(echo.close)

	type variant struct {
		sig    syscall.Signal
		stream bool
	}
	variants := []variant{{syscall.SIGTERM, false}, {syscall.SIGINT, false}, {syscall.SIGTERM, true}}
	for _, role := range []string{"relay", "publish", "socksd"} {
		for _, v := range variants {
			name := fmt.Sprintf("%s/%s", role, sigName(v.sig))
			if v.stream {
				name += "-active-stream"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				c := startChain(t, echo.port)
				if v.stream {
					c.openStream(t)
				}
				target := map[string]*proc{"relay": c.relay, "publish": c.publish, "socksd": c.socksd}[role]
				code, took, err := target.stop(v.sig, stopTimeout)
				if err != nil {
					t.Fatal(err)
				}
				if code != 0 {
					t.Fatalf("%s after %v: %s in %s, want exit status 0", role, sigName(v.sig), target.exitDesc(), took.Round(time.Millisecond))
				}
				t.Logf("%s exited 0 in %s after %s", role, took.Round(time.Millisecond), sigName(v.sig))
			})
		}
	}
}

func sigName(s syscall.Signal) string {
	switch s {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	}
	return s.String()
}

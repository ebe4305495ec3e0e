//go:build linux

package e2e

// SOCKS5 reply codes, and how fast the failures come back.
//
// Non-.tunnel targets on the shared socksd use loopback names and literals
// (localhost, 127.0.0.1, ::1) pointing at a port that does listen: with the
// default `--fallback reject` they must still get 0x02, and if socksd wrongly
// connected directly no packet would leave the machine. example.com is asked
// of a socksd that runs with a loopback-only resolver (isolate_test.go).

import (
	"strings"
	"testing"
	"time"
)

type codeCase struct {
	name    string
	cmd     byte
	atyp    byte
	host    string
	port    int
	want    byte
	maxTime time.Duration
}

func checkCodes(t *testing.T, proxy string, cases []codeCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := c.cmd
			if cmd == 0 {
				cmd = cmdConnect
			}
			atyp := c.atyp
			if atyp == 0 {
				atyp = atypDomain
			}
			rep, err := socksRequest(proxy, cmd, atyp, c.host, c.port)
			if rep.Conn != nil {
				rep.Conn.Close()
			}
			if err != nil {
				t.Fatalf("request %q:%d (cmd %d, atyp %d): %v", c.host, c.port, cmd, atyp, err)
			}
			t.Logf("%q:%d -> %s in %s", trimHost(c.host), c.port, replyName(rep.Code), rep.Elapsed.Round(time.Microsecond))
			if rep.Code != c.want {
				t.Errorf("reply %s, want %s", replyName(rep.Code), replyName(c.want))
			}
			if c.maxTime > 0 && rep.Elapsed > c.maxTime {
				t.Errorf("reply took %s, want under %s", rep.Elapsed.Round(time.Millisecond), c.maxTime)
			}
		})
	}
}

func trimHost(h string) string {
	if len(h) > 70 {
		return h[:70] + "…"
	}
	return h
}

func TestReplyCodes(t *testing.T) {
	e := getEnv(t)
	unknown := tunnelID(t, t.TempDir()) // valid, never published
	id := e.deviceID
	// z-base-32 'y' and 'o' are the only last characters without stray bits.
	stray := id[:51] + "b"
	sshPort := e.sshd.port

	checkCodes(t, e.socksAddr, []codeCase{
		{name: "unknown-device", host: unknown + ".tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "unknown-device-upper", host: strings.ToUpper(unknown) + ".TUNNEL", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "malformed-short", host: "abc.tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "malformed-52-bad-chars", host: strings.Repeat("l", 52) + ".tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "malformed-52-digits", host: strings.Repeat("0", 26) + strings.Repeat("2", 26) + ".tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "malformed-51-chars", host: id[:51] + ".tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "malformed-stray-bits", host: stray + ".tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "malformed-empty-label", host: ".tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "unpublished-port", host: id + ".tunnel", port: 23, want: repRefused, maxTime: 5 * time.Second},
		{name: "published-service-down", host: id + ".tunnel", port: 9999, want: repRefused, maxTime: 5 * time.Second},
		{name: "non-tunnel-name", host: "localhost", port: sshPort, want: repNotAllowed, maxTime: time.Second},
		{name: "non-tunnel-ip-as-domain", host: "127.0.0.1", port: sshPort, want: repNotAllowed, maxTime: time.Second},
		{name: "non-tunnel-ipv4", atyp: atypIPv4, host: "127.0.0.1", port: sshPort, want: repNotAllowed, maxTime: time.Second},
		{name: "non-tunnel-ipv6", atyp: atypIPv6, host: "::1", port: sshPort, want: repNotAllowed, maxTime: time.Second},
		{name: "bind", cmd: cmdBind, host: id + ".tunnel", port: 22, want: repCmdNotSupported, maxTime: time.Second},
		{name: "udp-associate", cmd: cmdUDP, host: id + ".tunnel", port: 22, want: repCmdNotSupported, maxTime: time.Second},
		{name: "published-ok", host: id + ".tunnel", port: 22, want: repSucceeded, maxTime: 5 * time.Second},
	})
}

func TestNetcatUnknownDeviceFailsFast(t *testing.T) {
	e := getEnv(t)
	unknown := tunnelID(t, t.TempDir())
	r := runCmd(20*time.Second, nil, nil, "nc", "-X", "5", "-x", e.socksAddr, unknown+".tunnel", "22")
	t.Logf("nc to an unknown device: %s", r)
	if r.Code == 0 {
		t.Fatalf("nc -X 5 to an unknown device exited 0")
	}
	if r.Elapsed > 2*time.Second {
		t.Fatalf("nc -X 5 to an unknown device took %s to fail, want under 2s", r.Elapsed.Round(time.Millisecond))
	}
}

// TestFallbackDirect: with --fallback direct, non-.tunnel targets are dialed
// directly (here: a loopback echo server), while .tunnel names still go
// through the tunnel (an unknown device is still 0x04, never a direct dial).
func TestFallbackDirect(t *testing.T) {
	echo, err := startTCPServer(echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(echo.close)
	socksPort, relayPort := freePort(t, "tcp"), freePort(t, "udp")
	p := startTunnel(t, "socksd-direct", t.TempDir(), nil, "socksd",
		"--listen", addr(socksPort), "--relay-listen", addr(relayPort), "--fallback", "direct")
	if err := waitTCP(addr(socksPort), 15*time.Second, p); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		atyp byte
		host string
	}{{atypIPv4, "127.0.0.1"}, {atypDomain, "127.0.0.1"}, {atypDomain, "localhost"}} {
		rep, err := socksRequest(addr(socksPort), cmdConnect, c.atyp, c.host, echo.port)
		if err != nil {
			t.Fatalf("CONNECT %s:%d: %v", c.host, echo.port, err)
		}
		if rep.Code != repSucceeded {
			t.Fatalf("CONNECT %s:%d with --fallback direct: %s, want 0x00", c.host, echo.port, replyName(rep.Code))
		}
		if _, err := rep.Conn.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := readLine(rep.Conn, 5*time.Second)
		rep.Conn.Close()
		if line != "ping\n" {
			t.Fatalf("echo through the direct fallback: %q, %v", line, err)
		}
	}
	unknown := tunnelID(t, t.TempDir())
	checkCodes(t, addr(socksPort), []codeCase{
		{name: "unknown-device", host: unknown + ".tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
		{name: "malformed", host: "abc.tunnel", port: 22, want: repHostUnreachable, maxTime: time.Second},
	})
}

// TestReplyCodesExampleCom asks for example.com, as a user's browser would.
// socksd must refuse it (0x02) without resolving it; it runs with a
// loopback-only resolver so that even a bug sends no query off the machine.
func TestReplyCodesExampleCom(t *testing.T) {
	wrap := loopbackDNSWrapper(t)
	socksPort, relayPort := freePort(t, "tcp"), freePort(t, "udp")
	args := append(wrap[1:], tunnelBin)
	args = append(args, tunnelArgs(t.TempDir(), "socksd", "--listen", addr(socksPort), "--relay-listen", addr(relayPort))...)
	p := startCmd(t, "socksd-loopback-dns", nil, wrap[0], args...)
	if err := waitTCP(addr(socksPort), 15*time.Second, p); err != nil {
		t.Fatal(err)
	}
	checkCodes(t, addr(socksPort), []codeCase{
		{name: "example.com", host: "example.com", port: 80, want: repNotAllowed, maxTime: time.Second},
		{name: "EXAMPLE.COM.", host: "EXAMPLE.COM.", port: 443, want: repNotAllowed, maxTime: time.Second},
		{name: "tunnel-lookalike", host: "example.tunnel.com", port: 80, want: repNotAllowed, maxTime: time.Second},
	})
}

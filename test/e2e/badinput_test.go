//go:build linux

package e2e

// Bad input never crashes anything: garbage datagrams to rendezvous nodes,
// garbage and truncated SOCKS requests, bad command lines, a broken identity.

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// garbageDatagrams: every 1-byte datagram, every first byte 0x00..0x3f
// (QUIC short headers without the fixed bit), random sizes up to 65000,
// and QUIC-looking Initial packets (version 1, random payload), truncated
// long headers and an unknown version.
func garbageDatagrams() [][]byte {
	var out [][]byte
	for b := 0; b < 256; b++ {
		out = append(out, []byte{byte(b)})
	}
	for b := 0; b < 0x40; b++ {
		p := random(1200)
		p[0] = byte(b)
		out = append(out, p)
	}
	for _, n := range []int{2, 3, 4, 5, 6, 7, 8, 16, 20, 21, 25, 64, 100, 512, 1199, 1200, 1201, 1252, 1350, 1452, 1500, 2048, 9000, 65000} {
		for i := 0; i < 3; i++ {
			out = append(out, random(n))
		}
	}
	for i := 0; i < 16; i++ {
		p := random(1200)
		p[0] = 0xc0 | byte(i&3)               // long header, Initial
		binary.BigEndian.PutUint32(p[1:5], 1) // QUIC v1
		p[5] = 8                              // DCID length
		p[14] = 0                             // SCID length
		p[15] = 0                             // token length
		binary.BigEndian.PutUint16(p[16:18], 0x4000|1180)
		out = append(out, p)
	}
	out = append(out,
		[]byte{0xc0, 0, 0, 0, 1},
		[]byte{0xc0, 0, 0, 0, 1, 20},
		[]byte{0xc0, 0, 0, 0, 1, 255, 1, 2, 3},
		append([]byte{0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8}, random(1194)...), // unknown version
		append([]byte{0xff, 0xff, 0xff, 0xff, 0xff}, random(1195)...),
	)
	return out
}

// sprayUDP sends the garbage to target from several source ports.
func sprayUDP(t *testing.T, target string) int {
	t.Helper()
	raddr, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	grams := garbageDatagrams()
	for src := 0; src < 4; src++ {
		c, err := net.DialUDP("udp", nil, raddr)
		if err != nil {
			t.Fatal(err)
		}
		for i, g := range grams {
			if i%4 != src && len(g) > 1 { // spread the big ones over the sockets
				continue
			}
			if _, err := c.Write(g); err == nil {
				sent++
			}
			if sent%64 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		c.Close()
	}
	return sent
}

func TestGarbageUDP(t *testing.T) {
	e := getEnv(t)
	f := startRelayFixture(t)

	n1 := sprayUDP(t, e.relayAddr)
	n2 := sprayUDP(t, addr(f.port))
	t.Logf("sent %d garbage datagrams to socksd's embedded node %s and %d to the relay %s", n1, e.relayAddr, n2, addr(f.port))
	time.Sleep(500 * time.Millisecond)

	if f.relay.exited() {
		t.Fatalf("relay died after garbage datagrams: %s", f.relay.exitDesc())
	}
	if err := e.alive(); err != nil {
		t.Fatalf("after garbage datagrams: %v", err)
	}
	// The embedded node still serves the registered device…
	if err := e.sshd.checkEcho(30*time.Second, nil, e.ncProxy(), e.host(), "after-udp-garbage"); err != nil {
		t.Fatal(err)
	}
	// …and the separate relay still accepts a new device.
	_, id := publishSSH(t, e, "publish", addr(f.port))
	if _, err := waitReachable(f.socksAddr, id+".tunnel", 22, 15*time.Second); err != nil {
		t.Fatalf("relay no longer works after garbage datagrams: %v", err)
	}
	if err := e.sshd.checkEcho(30*time.Second, nil, ncProxy(f.socksAddr), id+".tunnel", "relay-after-udp-garbage"); err != nil {
		t.Fatal(err)
	}
}

func TestGarbageSOCKS(t *testing.T) {
	e := getEnv(t)
	greet := []byte{5, 1, 0}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	longName := strings.Repeat("a", 255-len(".tunnel")) + ".tunnel"
	cases := []struct {
		name string
		data []byte
	}{
		{"random-1", random(1)},
		{"random-3", random(3)},
		{"random-100", random(100)},
		{"random-4096", random(4096)},
		{"socks4", []byte{4, 1, 0, 22, 127, 0, 0, 1, 0}},
		{"greeting-version-only", []byte{5}},
		{"greeting-truncated", []byte{5, 3, 0}},
		{"greeting-zero-methods", []byte{5, 0}},
		{"greeting-255-methods", append([]byte{5, 255}, make([]byte, 255)...)},
		{"greeting-userpass-only", []byte{5, 1, 2}},
		{"request-truncated-head", cat(greet, []byte{5, 1})},
		{"request-truncated-domain", cat(greet, []byte{5, 1, 0, 3, 40}, []byte("abc.tunnel"))},
		{"request-empty-domain", cat(greet, []byte{5, 1, 0, 3, 0, 0, 22})},
		{"request-nul-domain", cat(greet, []byte{5, 1, 0, 3, 9}, []byte("\x00\x00.tunnel"), []byte{0, 22})},
		{"request-255-domain", cat(greet, []byte{5, 1, 0, 3, 255}, []byte(longName), []byte{0, 22})},
		{"request-bad-atyp", cat(greet, []byte{5, 1, 0, 9, 1, 2, 3, 4, 0, 22})},
		{"request-bad-version", cat(greet, []byte{6, 1, 0, 1, 127, 0, 0, 1, 0, 22})},
		{"request-cmd-0", cat(greet, []byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 22})},
		{"request-cmd-255", cat(greet, []byte{5, 255, 0, 1, 127, 0, 0, 1, 0, 22})},
		{"request-port-0", cat(greet, []byte{5, 1, 0, 3, byte(len(e.host()))}, []byte(e.host()), []byte{0, 0})},
		{"request-ipv6-truncated", cat(greet, []byte{5, 1, 0, 4, 0, 0, 0})},
		{"http-get", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"http-connect", []byte("CONNECT " + e.host() + ":22 HTTP/1.1\r\n\r\n")},
	}

	// Connections that never say anything, or stop mid-greeting, must not
	// hold up anyone else while they stay open.
	var idle []net.Conn
	for i := 0; i < 16; i++ {
		c, err := net.DialTimeout("tcp", e.socksAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("idle connection %d: %v", i, err)
		}
		if i%2 == 1 {
			_, _ = c.Write([]byte{5})
		}
		idle = append(idle, c)
	}
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()

	for _, c := range cases {
		conn, err := net.DialTimeout("tcp", e.socksAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: dial: %v", c.name, err)
		}
		_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
		_, werr := conn.Write(c.data)
		_ = conn.(*net.TCPConn).CloseWrite()
		got, rerr := readAllTimeout(conn, 3*time.Second)
		conn.Close()
		t.Logf("%-26s sent %4d bytes (write err %v) -> got % x (%v)", c.name, len(c.data), werr, truncBytes(got, 24), rerr)
	}

	if err := e.alive(); err != nil {
		t.Fatalf("after garbage SOCKS requests: %v", err)
	}
	if err := e.sshd.checkEcho(30*time.Second, nil, e.ncProxy(), e.host(), "after-socks-garbage"); err != nil {
		t.Fatalf("with %d idle connections open after garbage SOCKS requests: %v", len(idle), err)
	}
}

func truncBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func TestBadCommandLine(t *testing.T) {
	home := t.TempDir()
	relay := addr(freePort(t, "udp")) // nothing there, should anything start
	socks := addr(freePort(t, "tcp"))
	cases := []struct {
		args []string
		want string // must appear in stderr
	}{
		{[]string{"publish", "--relay", relay, "-public", "99999"}, "99999"},
		{[]string{"publish", "--relay", relay, "-public", "abc"}, "abc"},
		{[]string{"publish", "--relay", relay, "-public", "1:2:3:4"}, "1:2:3:4"},
		{[]string{"publish", "--relay", relay, "-public", "22", "-public", "70000:22"}, "70000"},
		{[]string{"publish", "--relay", relay, "--nope", "-public", "22"}, "nope"},
		{[]string{"socksd", "--listen", socks, "--nope"}, "nope"},
		{[]string{"--nope", "id"}, "nope"},
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"help", "nosuch"}, `no command "nosuch"`},
	}
	for _, c := range cases {
		args := append([]string{"--home", home}, c.args...)
		r := runTunnel(10*time.Second, nil, args...)
		label := "tunnel " + strings.Join(args, " ")
		if r.TimedOut {
			t.Errorf("%s: still running after 10s (bad input accepted?): %s", label, r)
			continue
		}
		if r.Code != 2 {
			t.Errorf("%s: exit code %d, want 2: %s", label, r.Code, r)
		}
		stderr := string(r.Stderr)
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%s: stderr does not mention %q: %q", label, c.want, tail(stderr, 20, 2<<10))
		} else {
			t.Logf("%s -> %d: %s", label, r.Code, firstLine(stderr, c.want))
		}
	}
}

func firstLine(s, containing string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, containing) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func TestIdentity(t *testing.T) {
	home := t.TempDir()
	var ids []string
	for i := 0; i < 2; i++ {
		r := runTunnel(20*time.Second, nil, "--home", home, "id")
		if r.Code != 0 {
			t.Fatalf("tunnel id (run %d): %s", i+1, r)
		}
		out := string(r.Stdout)
		if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Fatalf("tunnel id printed %q, want exactly one line", out)
		}
		id := strings.TrimSuffix(out, "\n")
		if !idRE.MatchString(id) {
			t.Fatalf("tunnel id printed %q, want 52 lowercase z-base-32 characters", id)
		}
		ids = append(ids, id)
	}
	if ids[0] != ids[1] {
		t.Fatalf("tunnel id is not stable: %s then %s", ids[0], ids[1])
	}
	key := filepath.Join(home, "node.key")
	st, err := os.Stat(key)
	if err != nil {
		t.Fatalf("identity file: %v", err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", key, st.Mode().Perm())
	}

	// TUNNEL_HOME names the same home.
	r := runTunnel(20*time.Second, []string{"TUNNEL_HOME=" + home}, "id")
	if got := strings.TrimSpace(string(r.Stdout)); r.Code != 0 || got != ids[0] {
		t.Errorf("TUNNEL_HOME=%s tunnel id: want %s, got %s", home, ids[0], r)
	}
	// Another home, another identity.
	if other := tunnelID(t, t.TempDir()); other == ids[0] {
		t.Errorf("two fresh homes got the same ID %s", other)
	}
	t.Logf("id %s, key %s mode %v", ids[0], key, st.Mode().Perm())
}

func TestUnreadableIdentity(t *testing.T) {
	garbage := []byte("this is not a key\x00\xff garbage " + hex.EncodeToString(random(8)) + "\n")
	cmds := map[string]func() []string{
		"id":      func() []string { return []string{"id"} },
		"relay":   func() []string { return []string{"relay", "--listen", addr(freePort(t, "udp"))} },
		"publish": func() []string { return []string{"publish", "--relay", addr(freePort(t, "udp")), "-public", "22"} },
		"socksd": func() []string {
			return []string{"socksd", "--listen", addr(freePort(t, "tcp")), "--relay-listen", addr(freePort(t, "udp"))}
		},
	}
	for _, name := range []string{"id", "relay", "publish", "socksd"} {
		t.Run(name, func(t *testing.T) {
			home := t.TempDir()
			key := filepath.Join(home, "node.key")
			if err := os.WriteFile(key, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
			before, _ := os.Stat(key)
			args := append([]string{"--home", home}, cmds[name]()...)
			r := runTunnel(10*time.Second, nil, args...)
			label := "tunnel " + strings.Join(args, " ")
			switch {
			case r.TimedOut:
				t.Errorf("%s: still running after 10s with a garbage identity: %s", label, r)
			case r.Code == 0:
				t.Errorf("%s: exit 0 with a garbage identity: %s", label, r)
			}
			if !strings.Contains(string(r.Stderr), "node.key") {
				t.Errorf("%s: stderr does not name the identity file: %q", label, tail(string(r.Stderr), 20, 2<<10))
			} else {
				t.Logf("%s -> %d: %s", label, r.Code, firstLine(string(r.Stderr), "node.key"))
			}
			if name == "id" && len(strings.TrimSpace(string(r.Stdout))) != 0 {
				t.Errorf("%s: printed %q on stdout despite failing", label, r.Stdout)
			}
			after, err := os.ReadFile(key)
			if err != nil || string(after) != string(garbage) {
				t.Errorf("%s: the identity file was changed or removed (%v)", label, err)
			}
			if st, err := os.Stat(key); err == nil && (st.Mode() != before.Mode() || !st.ModTime().Equal(before.ModTime())) {
				t.Errorf("%s: the identity file's mode or mtime changed: %v %v -> %v %v", label, before.Mode(), before.ModTime(), st.Mode(), st.ModTime())
			}
			if ents, _ := os.ReadDir(home); len(ents) != 1 {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Logf("note: home now holds %v", names)
			}
		})
	}

}

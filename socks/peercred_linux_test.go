package socks

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// uidLookups are the two ways to ask the kernel, and the one socksd uses.
var uidLookups = map[string]func(local, remote netip.AddrPort) (uint32, error){
	"sock_diag": diagUID, "proc": procUID, "socketUID": socketUID,
}

// loopbackPair returns the two ends of a new connection to ln.
func loopbackPair(t testing.TB, ln net.Listener, dial string) (client, server net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", dial)
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		client.Close()
		t.Fatal(err)
	}
	return client, server
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// Both lookups find the uid of a real loopback client — over IPv4, IPv6,
// and IPv4 to a dual-stack listener (an AF_INET6 socket with v4-mapped
// addresses) — and find nothing once the client has closed its socket,
// although the kernel still lists it (as uid 0) for a while.
func TestSocketUID(t *testing.T) {
	want := uint32(os.Getuid())
	for _, tc := range []struct{ listen, dial string }{
		{"127.0.0.1:0", ""},
		{"[::1]:0", ""},
		{"[::]:0", "127.0.0.1"},
	} {
		ln, err := net.Listen("tcp", tc.listen)
		if err != nil {
			t.Logf("%s: %v (no IPv6 here?)", tc.listen, err)
			continue
		}
		dial := ln.Addr().String()
		if tc.dial != "" {
			_, port, _ := net.SplitHostPort(dial)
			dial = net.JoinHostPort(tc.dial, port)
		}
		c, s := loopbackPair(t, ln, dial)
		client, server := addrPort(s.RemoteAddr()), addrPort(s.LocalAddr())
		for name, lookup := range uidLookups {
			if uid, err := lookup(client, server); err != nil || uid != want {
				t.Errorf("%s, %s → %s: uid %d, %v; want %d", name, client, server, uid, err, want)
			}
			// An address nobody uses.
			other := netip.AddrPortFrom(client.Addr(), client.Port()^0x5555)
			if _, err := lookup(other, server); !errors.Is(err, errNoSocket) {
				t.Errorf("%s, %s → %s: %v, want errNoSocket", name, other, server, err)
			}
		}
		c.Close()
		// The client's socket becomes an orphan, then TIME_WAIT-like: no
		// process holds it, and its uid must not be taken for root's.
		deadline := time.Now().Add(2 * time.Second)
		for name, lookup := range uidLookups {
			for {
				uid, err := lookup(client, server)
				if errors.Is(err, errNoSocket) {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("%s after the client closed: uid %d, %v; want errNoSocket", name, uid, err)
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		s.Close()
		ln.Close()
	}
}

// BenchmarkSocketUID measures a lookup with 10,000 sockets open (5,000
// loopback connections): sock_diag answers from the kernel's hash table,
// /proc/net/tcp renders every socket on each read.
func BenchmarkSocketUID(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, n := range []int{0, 5000} {
		for len(conns) < 2*n {
			c, s := loopbackPair(b, ln, ln.Addr().String())
			conns = append(conns, c, s)
		}
		c, s := loopbackPair(b, ln, ln.Addr().String())
		conns = append(conns, c, s)
		client, server := addrPort(s.RemoteAddr()), addrPort(s.LocalAddr())
		for _, name := range []string{"sock_diag", "proc"} {
			b.Run(fmt.Sprintf("%s/sockets=%d", name, len(conns)), func(b *testing.B) {
				for b.Loop() {
					if _, err := uidLookups[name](client, server); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

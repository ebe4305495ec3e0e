package socks

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
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

// The kept sock_diag socket answers each lookup with its own reply: with
// lookups of several connections at once, and with a reply to an earlier
// question waiting in it (one whose lookup gave up), which must be skipped
// rather than taken for the answer, and must not close the socket.
func TestDiagSocketKept(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := uint32(os.Getuid())
	type pair struct{ client, server netip.AddrPort }
	var pairs []pair
	for range 8 {
		c, s := loopbackPair(t, ln, ln.Addr().String())
		defer c.Close()
		defer s.Close()
		pairs = append(pairs, pair{addrPort(s.RemoteAddr()), addrPort(s.LocalAddr())})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(pairs))
	for _, p := range pairs {
		wg.Go(func() {
			for range 50 {
				if uid, err := diagUID(p.client, p.server); err != nil || uid != want {
					errs <- fmt.Errorf("%s → %s: uid %d, %v", p.client, p.server, uid, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A late reply: ask about pairs[0] under a number no lookup uses, and
	// leave its answer in the socket.
	diagSock.mu.Lock()
	if !diagSock.open {
		diagSock.mu.Unlock()
		t.Fatal("no socket kept after successful lookups")
	}
	fd := diagSock.fd
	if err := diagSend(fd, diagSock.seq+1000, pairs[0].client, pairs[0].server); err != nil {
		diagSock.mu.Unlock()
		t.Fatal(err)
	}
	diagSock.mu.Unlock()
	if uid, err := diagUID(pairs[1].client, pairs[1].server); err != nil || uid != want {
		t.Fatalf("lookup after a late reply: uid %d, %v; want %d", uid, err, want)
	}
	diagSock.mu.Lock()
	kept := diagSock.open && diagSock.fd == fd
	diagSock.mu.Unlock()
	if !kept {
		t.Error("the socket was replaced after a late reply it should have skipped")
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

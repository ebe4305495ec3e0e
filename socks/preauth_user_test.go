package socks

import (
	"net"
	"net/netip"
	"testing"

	"github.com/rs/zerolog"
)

// Local users share 127.0.0.1: counted by user, one cannot hold the
// others' not-yet-authorized slots (socksd's owner's among them).
func TestPreAuthCountsLocalClientsByUser(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conns := func(n int) []net.Conn {
		var out []net.Conn
		for range n {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			out = append(out, s)
		}
		return out
	}
	cs := conns(3)
	// The "kernel" says: the first two clients are uid 1000's, the third
	// socksd's owner's.
	owner := &OwnerOnly{log: zerolog.Nop(), report: nil, lookup: func(local, _ netip.AddrPort) (uint32, error) {
		if local == cs[2].RemoteAddr().(*net.TCPAddr).AddrPort() {
			return 0, nil
		}
		return 1000, nil
	}}

	byAddr := NewPreAuth(1, 10, zerolog.Nop())
	if _, ok := byAddr.acquire(cs[0]); !ok {
		t.Fatal("the first local client refused")
	}
	if _, ok := byAddr.acquire(cs[2]); ok {
		t.Fatal("by address, a second client from 127.0.0.1 got a slot at a cap of 1")
	}

	byUser := NewPreAuth(1, 10, zerolog.Nop())
	byUser.KeyLocalByUser(owner)
	if _, ok := byUser.acquire(cs[0]); !ok {
		t.Fatal("uid 1000's first client refused")
	}
	if _, ok := byUser.acquire(cs[1]); ok {
		t.Fatal("uid 1000's second client got a slot at a cap of 1")
	}
	if _, ok := byUser.acquire(cs[2]); !ok {
		t.Fatal("the owner's client refused: another local user holds its slots")
	}
}

package socks

import (
	"errors"
	"net"
	"net/netip"
	"testing"
)

// OwnerOnly admits this user's (and root's) clients, refuses the others
// and those whose user is unknown, and logs one line per user per 10 s.
func TestOwnerOnly(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, s := loopbackPair(t, ln, ln.Addr().String())
	defer c.Close()
	defer s.Close()

	sink, log := newLogSink()
	o := NewOwnerOnly(log)
	if err := o.Admit(s); err != nil {
		t.Fatalf("a client of this user: %v", err)
	}
	if err := (*OwnerOnly)(nil).Admit(s); err != nil {
		t.Fatalf("no check: %v", err)
	}

	for _, uid := range []uint32{o.uids[0], 0} {
		o.lookup = func(netip.AddrPort, netip.AddrPort) (uint32, error) { return uid, nil }
		if err := o.Admit(s); err != nil {
			t.Fatalf("uid %d: %v", uid, err)
		}
	}
	uid := uint32(4242)
	o.lookup = func(netip.AddrPort, netip.AddrPort) (uint32, error) { return uid, nil }
	for range 20 {
		if err := o.Admit(s); !errors.Is(err, ErrOtherUser) {
			t.Fatalf("uid 4242: %v, want ErrOtherUser", err)
		}
	}
	uid = 4343
	if err := o.Admit(s); !errors.Is(err, ErrOtherUser) {
		t.Fatalf("uid 4343: %v, want ErrOtherUser", err)
	}
	o.lookup = func(netip.AddrPort, netip.AddrPort) (uint32, error) { return 0, errNoSocket }
	if err := o.Admit(s); !errors.Is(err, ErrOtherUser) {
		t.Fatalf("unknown user: %v, want ErrOtherUser (fail closed)", err)
	}

	lines := map[string]int{}
	for len(sink) > 0 {
		if m := <-sink; m["message"] != nil {
			lines[m["uid"].(string)]++
		}
	}
	if len(lines) != 3 || lines["4242"] != 1 || lines["4343"] != 1 || lines["unknown"] != 1 {
		t.Fatalf("log lines per uid %v; want one each for 4242 (20 refusals), 4343 and unknown", lines)
	}
}

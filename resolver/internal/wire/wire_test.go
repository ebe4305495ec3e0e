package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

func TestMessages(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteMsg(&buf, ReqLookup, []byte("body")); err != nil {
		t.Fatal(err)
	}
	if lead, body, err := ReadMsg(&buf); err != nil || lead != ReqLookup || string(body) != "body" {
		t.Fatalf("ReadMsg = %d %q %v", lead, body, err)
	}
	if err := WriteMsg(&buf, ReqPing, make([]byte, MaxBody+1)); err == nil {
		t.Fatal("an oversized body was written")
	}
	for _, b := range [][]byte{nil, {1, 0}, {1, 0, 5, 'x'}, {1, 0xff, 0xff}} {
		if _, _, err := ReadMsg(bytes.NewReader(b)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ReadMsg(%x) = %v, want ErrMalformed", b, err)
		}
	}
}

func TestBodies(t *testing.T) {
	nonce := transport.EndpointNonce{1, 2, 3}
	r, err := ParseRegister(Register{Endpoint: 42, Nonce: nonce, Publishes: true}.Body())
	if err != nil || r.Endpoint != 42 || !r.Publishes || r.Nonce != nonce {
		t.Fatalf("register round trip: %+v %v", r, err)
	}
	if r, _ := ParseRegister(Register{Endpoint: 42, Nonce: nonce, Publishes: false}.Body()); r.Publishes || r.Lease {
		t.Fatal("a node that does not publish registered as a device")
	}
	if r, _ := ParseRegister(Register{Endpoint: 42, Nonce: nonce, Publishes: true, Lease: true}.Body()); !r.Lease || !r.Publishes {
		t.Fatal("the lease flag did not round-trip")
	}
	for _, b := range [][]byte{nil, make([]byte, 9), Register{Endpoint: 0, Nonce: nonce, Publishes: true}.Body(), make([]byte, 26)} {
		if _, err := ParseRegister(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseRegister(%x) = %v", b, err)
		}
	}
	k, _ := identity.Generate()
	if id, err := ParseLookup(LookupBody(k.ID())); err != nil || id != k.ID() {
		t.Fatalf("lookup round trip: %v %v", id, err)
	}
	ap := netip.MustParseAddrPort("[2001:db8::1]:7443")
	if got, err := ParseObserved(ObservedBody(ap)); err != nil || got != ap {
		t.Fatalf("observed round trip: %v %v", got, err)
	}
	// A register reply without a lease (a relay of before leases) and one
	// with.
	if got, g, err := ParseRegistered(ObservedBody(ap)); err != nil || got != ap || g != nil {
		t.Fatalf("reply without a lease: %v %+v %v", got, g, err)
	}
	grant := Grant{Expires: 1 << 40, TTL: time.Hour, Key: transport.LeaseKey{9}}
	if got, g, err := ParseRegistered(GrantBody(ap, grant)); err != nil || got != ap || g == nil || *g != grant {
		t.Fatalf("reply with a lease: %v %+v %v", got, g, err)
	}
	noTime := grant
	noTime.TTL = 0
	for _, b := range [][]byte{{0}, GrantBody(ap, grant)[:grantLen], GrantBody(ap, noTime), GrantBody(ap, grant)[:grantLen-1]} {
		if _, _, err := ParseRegistered(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseRegistered(%x) = %v", b, err)
		}
	}
	for _, f := range []Found{{Endpoint: 7}, {Endpoint: 7, Home: k.ID(), HomeAddr: "relay.example:7443"}} {
		status, body := FoundReply(f)
		got, err := ParseFound(status, body)
		if err != nil || got != f {
			t.Errorf("found %+v: round trip %s %+v %v", f, StatusText(status), got, err)
		}
	}
	bad := []struct {
		status byte
		body   []byte
	}{
		{StatusOK, nil},
		{StatusOK, make([]byte, 8)},          // endpoint 0
		{StatusOK, make([]byte, 9)},          // trailing byte
		{StatusRedirect, make([]byte, 8+32)}, // no address
		{StatusRedirect, append(append(binary.BigEndian.AppendUint64(nil, 7), make([]byte, 32)...), "a:1"...)}, // zero home
		{StatusNotFound, make([]byte, 8)},
	}
	for _, b := range bad {
		if _, err := ParseFound(b.status, b.body); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseFound(%s, %d bytes) = %v", StatusText(b.status), len(b.body), err)
		}
	}
}

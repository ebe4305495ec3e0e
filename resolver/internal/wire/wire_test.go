package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

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
	r, err := ParseRegister(RegisterBody(42, nonce, true))
	if err != nil || r.Endpoint != 42 || !r.Publishes || r.Nonce != nonce {
		t.Fatalf("register round trip: %+v %v", r, err)
	}
	if r, _ := ParseRegister(RegisterBody(42, nonce, false)); r.Publishes {
		t.Fatal("a node that does not publish registered as a device")
	}
	for _, b := range [][]byte{nil, make([]byte, 9), RegisterBody(0, nonce, true), make([]byte, 26)} {
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

package wire

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// Both halves parse what the other side of an outer connection sends: a
// registry parses a stranger's requests, a node parses whatever answers at
// the relay address it was given. Every parser here must refuse with
// ErrMalformed what it cannot take, and what it takes must be exactly what
// the matching builder writes, so that no two byte strings mean one message.

// fixedID is a deterministic ID, so that the committed corpus names it.
func fixedID(seed byte) identity.ID {
	return identity.FromPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))).ID()
}

func FuzzReadMsg(f *testing.F) {
	for _, m := range []struct {
		lead byte
		body []byte
	}{
		{ReqRegister, Register{Endpoint: 42, Nonce: transport.EndpointNonce{1}, Publishes: true}.Body()},
		{ReqLookup, LookupBody(fixedID(1))},
		{ReqPing, make([]byte, PingLen)},
		{StatusOK, nil},
	} {
		var b bytes.Buffer
		if err := WriteMsg(&b, m.lead, m.body); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	f.Add([]byte{ReqPing, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		lead, body, err := ReadMsg(r)
		consumed := len(b) - r.Len()
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ReadMsg(%x): %v does not wrap ErrMalformed", b, err)
			}
			// A length over MaxBody is refused before a byte of the body
			// is read or allocated.
			if len(b) >= 3 && int(binary.BigEndian.Uint16(b[1:3])) > MaxBody && consumed != 3 {
				t.Fatalf("ReadMsg read %d bytes of a message claiming a %d-byte body", consumed, binary.BigEndian.Uint16(b[1:3]))
			}
			return
		}
		if len(body) > MaxBody || cap(body) > MaxBody {
			t.Fatalf("ReadMsg returned a body of len %d, cap %d; MaxBody is %d", len(body), cap(body), MaxBody)
		}
		if consumed != 3+len(body) {
			t.Fatalf("ReadMsg consumed %d bytes for a %d-byte body: it reads past its message", consumed, len(body))
		}
		var w bytes.Buffer
		if err := WriteMsg(&w, lead, body); err != nil || !bytes.Equal(w.Bytes(), b[:consumed]) {
			t.Fatalf("read %x; WriteMsg gives %x, %v", b[:consumed], w.Bytes(), err)
		}
	})
}

func FuzzParseRegister(f *testing.F) {
	f.Add(Register{Endpoint: 42, Nonce: transport.EndpointNonce{1, 2, 3}, Publishes: true}.Body())
	f.Add(Register{Endpoint: 7, Nonce: transport.EndpointNonce{4}, Publishes: true, Lease: true}.Body())
	f.Add(Register{Endpoint: 1 << 63, Nonce: transport.EndpointNonce{}, Publishes: false}.Body())
	f.Add(Register{Endpoint: 0, Nonce: transport.EndpointNonce{9}, Publishes: true}.Body())
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseRegister(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseRegister(%x): %v does not wrap ErrMalformed", body, err)
			}
			return
		}
		if r.Endpoint == 0 {
			t.Fatalf("ParseRegister(%x) took endpoint 0", body)
		}
		// Flag bits other than flagPublishes and flagLease are ignored
		// (room for new flags); everything else re-encodes as it came.
		want := bytes.Clone(body)
		want[8] &= flagPublishes | flagLease
		if got := r.Body(); !bytes.Equal(got, want) {
			t.Fatalf("ParseRegister(%x) = %+v; its Body is %x", body, r, got)
		}
	})
}

func FuzzParseLookup(f *testing.F) {
	f.Add(LookupBody(fixedID(1)))
	f.Add(make([]byte, 31))
	f.Fuzz(func(t *testing.T, body []byte) {
		id, err := ParseLookup(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseLookup(%x): %v does not wrap ErrMalformed", body, err)
			}
			return
		}
		if got := LookupBody(id); !bytes.Equal(got, body) {
			t.Fatalf("ParseLookup(%x) = %s; LookupBody gives %x", body, id, got)
		}
	})
}

func FuzzParseFound(f *testing.F) {
	for _, found := range []Found{
		{Endpoint: 7},
		{Endpoint: 7, Home: fixedID(2), HomeAddr: "10.0.0.1:7443"},
		{Endpoint: ^transport.Endpoint(0), Home: fixedID(3), HomeAddr: "[2001:db8::1]:7443"},
	} {
		status, body := FoundReply(found)
		f.Add(status, body)
	}
	f.Add(byte(StatusRedirect), make([]byte, 8+32+1))
	f.Add(byte(StatusNotFound), []byte{})
	f.Fuzz(func(t *testing.T, status byte, body []byte) {
		found, err := ParseFound(status, body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseFound(%d, %x): %v does not wrap ErrMalformed", status, body, err)
			}
			return
		}
		if found.Endpoint == 0 {
			t.Fatalf("ParseFound(%d, %x) took endpoint 0", status, body)
		}
		if status == StatusRedirect && (found.Home.Weak() || found.HomeAddr == "") {
			t.Fatalf("ParseFound(%d, %x) took a redirect to %q at %q, which no node can be", status, body, found.Home, found.HomeAddr)
		}
		// A redirect parses to a Found that re-encodes as a redirect,
		// and an OK to one that re-encodes as an OK: no reply changes
		// its meaning on the way through.
		if s, b := FoundReply(found); s != status || !bytes.Equal(b, body) {
			t.Fatalf("ParseFound(%s, %x) = %+v; FoundReply gives %s, %x", StatusText(status), body, found, StatusText(s), b)
		}
	})
}

func FuzzParseRegistered(f *testing.F) {
	f.Add(ObservedBody(netip.MustParseAddrPort("203.0.113.7:40000")))
	f.Add(ObservedBody(netip.MustParseAddrPort("[2001:db8::1]:7443")))
	f.Add(GrantBody(netip.MustParseAddrPort("198.51.100.2:9"), Grant{Expires: 1 << 40, TTL: time.Hour, Key: transport.LeaseKey{1}}))
	f.Add([]byte("[fe80::1%eth0]:1"))
	f.Add([]byte("1.2.3.4"))
	f.Add([]byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, body []byte) {
		ap, g, err := ParseRegistered(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseRegistered(%q): %v does not wrap ErrMalformed", body, err)
			}
			return
		}
		if !ap.IsValid() {
			t.Fatalf("ParseRegistered(%q) = an invalid address", body)
		}
		again := ObservedBody(ap)
		if g != nil {
			if g.TTL <= 0 || g.TTL%time.Second != 0 {
				t.Fatalf("ParseRegistered(%q) = a lease of %v", body, g.TTL)
			}
			again = GrantBody(ap, *g)
		}
		if ap2, g2, err := ParseRegistered(again); err != nil || ap2 != ap || (g == nil) != (g2 == nil) || (g != nil && *g2 != *g) {
			t.Fatalf("ParseRegistered(%q) = %s, %+v; its body again parses to %s, %+v, %v", body, ap, g, ap2, g2, err)
		}
	})
}

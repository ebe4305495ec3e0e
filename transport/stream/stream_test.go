package stream

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestHeaderRoundTrip(t *testing.T) {
	for _, o := range []Header{{Port: 22}, {Port: 65535, Credential: []byte("cred")}, {Port: 1, Credential: bytes.Repeat([]byte{7}, MaxCredentialLen)}} {
		b, err := AppendHeader(nil, o)
		if err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(append(b, "payload"...))
		got, err := ReadHeader(r)
		if err != nil {
			t.Fatalf("ReadHeader(%+v): %v", o, err)
		}
		if got.Port != o.Port || !bytes.Equal(got.Credential, o.Credential) {
			t.Fatalf("got %+v, want %+v", got, o)
		}
		if r.Len() != len("payload") {
			t.Fatalf("ReadHeader read past the header: %d bytes left", r.Len())
		}
	}
	if _, err := AppendHeader(nil, Header{Port: 1, Credential: make([]byte, MaxCredentialLen+1)}); err == nil {
		t.Fatal("oversized credential accepted")
	}
}

func TestReadHeaderRejects(t *testing.T) {
	good, _ := AppendHeader(nil, Header{Port: 22, Credential: []byte("abc")})
	for i := range good {
		if _, err := ReadHeader(bytes.NewReader(good[:i])); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("truncated at %d: err %v", i, err)
		}
	}
	for name, b := range map[string][]byte{
		"version 2": {2, 0, 22, 0, 0},
		"port 0":    {1, 0, 0, 0, 0},
		"huge cred": {1, 0, 22, 0xff, 0xff},
	} {
		if _, err := ReadHeader(bytes.NewReader(b)); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestStatus(t *testing.T) {
	cases := map[StatusCode]error{
		StatusOK: nil, StatusNotPublished: ErrPortNotPublished, StatusDenied: ErrDenied,
		StatusRefused: ErrRefused, StatusTimeout: ErrTimeout, StatusBadRequest: ErrBadRequest, StatusNotSSH: ErrNotSSH,
		99: ErrBadRequest,
	}
	for code, want := range cases {
		c, msg, err := ReadStatus(bytes.NewReader(AppendStatus(nil, code, "why")))
		if err != nil || c != code || msg != "why" {
			t.Fatalf("status %v: read %v %q %v", code, c, msg, err)
		}
		err = StatusError(c, msg)
		if !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("status %v: err %v, want %v", code, err, want)
		}
		if want != nil && !strings.Contains(err.Error(), "why") {
			t.Errorf("status %v: reason lost: %v", code, err)
		}
	}
	long := strings.Repeat("x", 300)
	if c, msg, err := ReadStatus(bytes.NewReader(AppendStatus(nil, StatusDenied, long))); c != StatusDenied || len(msg) != 255 || err != nil {
		t.Errorf("long reason: %v %d %v", c, len(msg), err)
	}
	if _, _, err := ReadStatus(bytes.NewReader([]byte{0})); err == nil {
		t.Error("truncated status accepted")
	}
}

func TestCredentialMessage(t *testing.T) {
	for _, cred := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte{1}, MaxCredentialLen)} {
		b, err := AppendCredential(nil, cred)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ReadCredential(bytes.NewReader(b))
		if err != nil || !bytes.Equal(got, cred) {
			t.Fatalf("round trip of %d bytes: %d, %v", len(cred), len(got), err)
		}
		for i := range min(len(b), 4) {
			if i < len(b) && i > 0 && len(cred) > 0 {
				if _, err := ReadCredential(bytes.NewReader(b[:i])); err == nil {
					t.Fatalf("truncated at %d accepted", i)
				}
			}
		}
	}
	if _, err := ReadCredential(bytes.NewReader([]byte{0xff, 0xff})); err == nil {
		t.Fatal("oversized credential accepted")
	}
}

func FuzzReadHeader(f *testing.F) {
	f.Add([]byte{1, 0, 22, 0, 0})
	f.Add([]byte{1, 0x1f, 0x90, 0, 3, 'a', 'b', 'c'})
	f.Add([]byte{2, 0, 22, 0, 0})
	f.Add([]byte{1, 0, 0, 0, 0})
	f.Add([]byte{1, 0, 22, 0xff, 0xff, 1})
	f.Add([]byte{2, 1, 0, 22, 0, 0})
	f.Add([]byte{2, 2, 0, 0, 0, 0})
	f.Add([]byte{2, 1, 0, 22, 0, 2, 'c', 'r'})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("ReadHeader(%x): %v does not wrap ErrMalformedHeader", b, err)
			}
			return
		}
		enc, err := AppendHeader(nil, o)
		if err != nil {
			t.Fatalf("parsed %+v but cannot encode it: %v", o, err)
		}
		if !bytes.Equal(enc, b[:len(enc)]) {
			t.Fatalf("re-encoding %x gave %x", b[:len(enc)], enc)
		}
	})
}

// FuzzReadStatus checks that ReadStatus fails only on a short read, reads
// exactly one Status, which AppendStatus writes back as it came, and that a
// final status's error is its code's sentinel.
func FuzzReadStatus(f *testing.F) {
	f.Add(AppendStatus(nil, StatusOK, ""))
	f.Add(AppendStatus(nil, StatusDenied, "\x1b]0;owned\x07\x1b[2J"))
	f.Add(AppendStatus(nil, StatusCredentialRequired, "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"))
	f.Add([]byte{byte(StatusDenied), 10, 'n', 'o'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		code, msg, err := ReadStatus(r)
		if short := len(b) < 2 || len(b) < 2+int(b[1]); (err != nil) != short {
			t.Fatalf("ReadStatus(%x) = %v; input short: %v", b, err, short)
		}
		if err != nil {
			return
		}
		consumed := len(b) - r.Len()
		// The reason comes back as it went, but for the bytes that are not
		// printable ASCII, each now a '?'.
		want := bytes.Clone(b[:consumed])
		for i := 2; i < len(want); i++ {
			if want[i] < 0x20 || want[i] > 0x7e {
				want[i] = '?'
			}
		}
		if consumed != 2+len(msg) || !bytes.Equal(AppendStatus(nil, code, msg), want) {
			t.Fatalf("ReadStatus(%x) = %v, %q after %d bytes", b, code, msg, consumed)
		}
		serr := StatusError(code, msg)
		if (code == StatusOK) != (serr == nil) || (serr != nil && !errors.Is(serr, code.Err())) {
			t.Fatalf("StatusError(%v, %q) = %v", code, msg, serr)
		}
	})
}

// FuzzReadCredential checks that ReadCredential errors wrap
// ErrMalformedHeader, that it reads exactly one Credential message of at
// most MaxCredentialLen, and that AppendCredential writes it back as it
// came.
func FuzzReadCredential(f *testing.F) {
	f.Add([]byte{0, 0})
	f.Add([]byte{0, 4, 'c', 'r', 'e', 'd'})
	f.Add([]byte{0xff, 0xff, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		cred, err := ReadCredential(r)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("ReadCredential(%x): %v does not wrap ErrMalformedHeader", b, err)
			}
			return
		}
		consumed := len(b) - r.Len()
		if len(cred) > MaxCredentialLen || consumed != 2+len(cred) || (cred != nil && len(cred) == 0) {
			t.Fatalf("ReadCredential(%x) = %d bytes after consuming %d", b, len(cred), consumed)
		}
		enc, err := AppendCredential(nil, cred)
		if err != nil || !bytes.Equal(enc, b[:consumed]) {
			t.Fatalf("ReadCredential(%x) = %x; AppendCredential gives %x, %v", b, cred, enc, err)
		}
	})
}

// A device's reason reaches a terminal (tunnel connect's error) only as
// printable ASCII: no escape sequence of a device's choosing gets through.
func TestStatusReasonPrintable(t *testing.T) {
	_, msg, err := ReadStatus(bytes.NewReader(AppendStatus(nil, StatusDenied, "no\x1b]0;owned\x07\x1b[2J é")))
	if err != nil || msg != "no?]0;owned??[2J ??" {
		t.Fatalf("reason %q, %v", msg, err)
	}
}

func TestKindHeaders(t *testing.T) {
	for _, tc := range []struct {
		o    Header
		wire []byte
	}{
		// A connect stays version 1, byte for byte, for older devices.
		{Header{Port: 22}, []byte{1, 0, 22, 0, 0}},
		{Header{Kind: KindHostKeys, Port: 2222}, []byte{2, 1, 0x08, 0xae, 0, 0}},
		{Header{Kind: KindHostKeys, Port: 22, Credential: []byte("cr")}, []byte{2, 1, 0, 22, 0, 2, 'c', 'r'}},
		{Header{Kind: KindPing}, []byte{2, 2, 0, 0, 0, 0}},
	} {
		b, err := AppendHeader(nil, tc.o)
		if err != nil || !bytes.Equal(b, tc.wire) {
			t.Fatalf("AppendHeader(%+v) = % x, %v; want % x", tc.o, b, err, tc.wire)
		}
		r := bytes.NewReader(append(b, "payload"...))
		got, err := ReadHeader(r)
		if err != nil || got.Kind != tc.o.Kind || got.Port != tc.o.Port || !bytes.Equal(got.Credential, tc.o.Credential) {
			t.Fatalf("ReadHeader(% x) = %+v, %v; want %+v", b, got, err, tc.o)
		}
		if r.Len() != len("payload") {
			t.Fatalf("ReadHeader(% x) read past the header: %d bytes left", b, r.Len())
		}
		for i := range b {
			if _, err := ReadHeader(bytes.NewReader(b[:i])); !errors.Is(err, ErrMalformedHeader) {
				t.Errorf("% x truncated at %d: err %v", b, i, err)
			}
		}
	}
	for _, o := range []Header{
		{Kind: KindHostKeys},                      // port 0
		{Kind: KindPing, Port: 22},                // a ping names no port
		{Kind: KindPing, Credential: []byte("x")}, // nor a credential
		{Kind: 3, Port: 22},
		{Kind: KindHostKeys, Port: 22, Credential: make([]byte, MaxCredentialLen+1)},
	} {
		if b, err := AppendHeader(nil, o); err == nil {
			t.Errorf("AppendHeader(%+v) = % x, want an error", o, b)
		}
	}
	for name, b := range map[string][]byte{
		"connect as version 2":       {2, 0, 0, 22, 0, 0},
		"unknown kind":               {2, 3, 0, 22, 0, 0},
		"host keys of port 0":        {2, 1, 0, 0, 0, 0},
		"ping with a port":           {2, 2, 0, 22, 0, 0},
		"ping with a credential":     {2, 2, 0, 0, 0, 1, 'x'},
		"host keys, huge credential": {2, 1, 0, 22, 0xff, 0xff},
		"version 3":                  {3, 1, 0, 22, 0, 0},
	} {
		if _, err := ReadHeader(bytes.NewReader(b)); !errors.Is(err, ErrMalformedHeader) {
			t.Errorf("%s (% x): err %v, want ErrMalformedHeader", name, b, err)
		}
	}
}

func TestHostKeysReply(t *testing.T) {
	maxKeys := make([][]byte, MaxHostKeys)
	for i := range maxKeys {
		maxKeys[i] = bytes.Repeat([]byte{byte(i + 1)}, MaxHostKeyLen)
	}
	for _, keys := range [][][]byte{{[]byte("k")}, {[]byte("ed25519 blob"), []byte("ecdsa blob"), []byte("rsa blob")}, maxKeys} {
		b, err := AppendHostKeys(nil, keys)
		if err != nil {
			t.Fatal(err)
		}
		r := bytes.NewReader(append(b, "after"...))
		got, err := ReadHostKeys(r)
		if err != nil || len(got) != len(keys) {
			t.Fatalf("round trip of %d keys: %d, %v", len(keys), len(got), err)
		}
		for i := range keys {
			if !bytes.Equal(got[i], keys[i]) {
				t.Fatalf("key %d differs", i)
			}
		}
		if r.Len() != len("after") {
			t.Fatalf("ReadHostKeys read past the reply: %d bytes left", r.Len())
		}
		for i := range min(len(b), 40) {
			if _, err := ReadHostKeys(bytes.NewReader(b[:i])); !errors.Is(err, ErrMalformedHostKeys) {
				t.Fatalf("truncated at %d: err %v", i, err)
			}
		}
	}
	for name, keys := range map[string][][]byte{
		"none":          nil,
		"too many":      append(bytes.Split(bytes.Repeat([]byte("k,"), MaxHostKeys), []byte(",")), []byte("k")),
		"empty key":     {{}},
		"key too large": {make([]byte, MaxHostKeyLen+1)},
	} {
		if _, err := AppendHostKeys(nil, keys); err == nil {
			t.Errorf("AppendHostKeys(%s) accepted", name)
		}
	}
	for name, b := range map[string][]byte{
		"zero keys":      {0},
		"17 keys":        {MaxHostKeys + 1, 0, 1, 'k'},
		"key of 0 bytes": {1, 0, 0},
		"key of 8193":    {1, 0x20, 0x01},
		"key of 65535":   {1, 0xff, 0xff, 'k'},
	} {
		if _, err := ReadHostKeys(bytes.NewReader(b)); !errors.Is(err, ErrMalformedHostKeys) {
			t.Errorf("%s (% x): err %v, want ErrMalformedHostKeys", name, b, err)
		}
	}
}

// FuzzReadHostKeys checks that ReadHostKeys reads exactly one reply within
// its bounds, which AppendHostKeys writes back as it came, and rejects the
// rest with ErrMalformedHostKeys.
func FuzzReadHostKeys(f *testing.F) {
	f.Add([]byte{1, 0, 3, 'k', 'e', 'y'})
	f.Add([]byte{2, 0, 1, 'a', 0, 2, 'b', 'c', 'x'})
	f.Add([]byte{0})
	f.Add([]byte{17, 0, 1, 'a'})
	f.Add([]byte{1, 0xff, 0xff, 'a'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		keys, err := ReadHostKeys(r)
		if err != nil {
			if !errors.Is(err, ErrMalformedHostKeys) {
				t.Fatalf("ReadHostKeys(%x): %v does not wrap ErrMalformedHostKeys", b, err)
			}
			return
		}
		consumed := len(b) - r.Len()
		if len(keys) == 0 || len(keys) > MaxHostKeys {
			t.Fatalf("ReadHostKeys(%x) = %d keys", b, len(keys))
		}
		enc, err := AppendHostKeys(nil, keys)
		if err != nil || !bytes.Equal(enc, b[:consumed]) {
			t.Fatalf("ReadHostKeys(%x) consumed %d; AppendHostKeys gives %x, %v", b, consumed, enc, err)
		}
	})
}

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
		StatusRefused: ErrRefused, StatusTimeout: ErrTimeout, StatusBadRequest: ErrBadRequest, 99: ErrBadRequest,
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
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
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

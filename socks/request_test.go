package socks

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// tail stands for bytes a client pipelines after a message; parsers must
// leave them unread.
const tail = "TAIL"

func TestReadGreeting(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    []byte
		wantErr error
	}{
		{"no auth", []byte{5, 1, 0}, []byte{0}, nil},
		{"several methods", []byte{5, 3, 2, 0, 1}, []byte{2, 0, 1}, nil},
		{"only user/pass", []byte{5, 1, 2}, []byte{2}, nil},
		{"all 255 methods", append([]byte{5, 255}, make([]byte, 255)...), make([]byte, 255), nil},
		{"zero methods", []byte{5, 0}, nil, ErrMalformed},
		{"socks4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, nil, ErrVersion},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), nil, ErrVersion},
		{"tls", []byte{0x16, 3, 1, 0, 0xa5}, nil, ErrVersion},
		{"empty", nil, nil, io.EOF},
		{"one byte", []byte{5}, nil, io.ErrUnexpectedEOF},
		{"methods cut short", []byte{5, 3, 0, 1}, nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if tt.wantErr == nil {
				in = append(bytes.Clone(in), tail...)
			}
			r := bytes.NewReader(in)
			got, err := ReadGreeting(iotest.OneByteReader(r))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ReadGreeting(% x) error = %v, want %v", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadGreeting(% x): %v", tt.in, err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("methods = % x, want % x", got, tt.want)
			}
			if rest, _ := io.ReadAll(r); string(rest) != tail {
				t.Errorf("left %q unread, want %q", rest, tail)
			}
		})
	}
}

var (
	tunnelID   = identity.ID{1, 2, 3}
	tunnelHost = tunnelID.String() + ".tunnel"
)

// Valid requests, shared by the truncation, encoding and server tests.
var validRequests = []struct {
	name string
	wire []byte
	req  Request
}{
	{
		"ipv4",
		[]byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 80},
		Request{CmdConnect, AddrIPv4, "127.0.0.1", 80},
	},
	{
		"ipv6 loopback",
		[]byte{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb},
		Request{CmdConnect, AddrIPv6, "::1", 443},
	},
	{
		"ipv6",
		[]byte{5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x2a, 0xff, 0xff},
		Request{CmdConnect, AddrIPv6, "2001:db8::2a", 65535},
	},
	{
		// Text form of a mapped address keeps the mapping, so that
		// re-encoding gives the same bytes.
		"ipv4-mapped ipv6",
		[]byte{5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1, 0, 22},
		Request{CmdConnect, AddrIPv6, "::ffff:10.0.0.1", 22},
	},
	{
		"domain",
		append(append([]byte{5, 1, 0, 3, 11}, "example.com"...), 0x1f, 0x90),
		Request{CmdConnect, AddrDomain, "example.com", 8080},
	},
	{
		"tunnel name",
		append(append([]byte{5, 1, 0, 3, byte(len(tunnelHost))}, tunnelHost...), 0, 22),
		Request{CmdConnect, AddrDomain, tunnelHost, 22},
	},
	{
		"ip literal as domain",
		append(append([]byte{5, 1, 0, 3, 8}, "10.1.2.3"...), 0, 80),
		Request{CmdConnect, AddrDomain, "10.1.2.3", 80},
	},
	{
		"longest domain",
		append(append([]byte{5, 1, 0, 3, 255}, strings.Repeat("a", 255)...), 0, 1),
		Request{CmdConnect, AddrDomain, strings.Repeat("a", 255), 1},
	},
	{
		"port 0",
		[]byte{5, 1, 0, 1, 0, 0, 0, 0, 0, 0},
		Request{CmdConnect, AddrIPv4, "0.0.0.0", 0},
	},
	{
		"bind",
		[]byte{5, 2, 0, 1, 192, 0, 2, 1, 0, 80},
		Request{CmdBind, AddrIPv4, "192.0.2.1", 80},
	},
	{
		"udp associate",
		[]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0},
		Request{CmdUDPAssociate, AddrIPv4, "0.0.0.0", 0},
	},
	{
		// Parsing is not where commands are judged.
		"unknown command",
		[]byte{5, 9, 0, 1, 1, 2, 3, 4, 0, 80},
		Request{9, AddrIPv4, "1.2.3.4", 80},
	},
}

func TestReadRequest(t *testing.T) {
	for _, tt := range validRequests {
		t.Run(tt.name, func(t *testing.T) {
			r := bytes.NewReader(append(bytes.Clone(tt.wire), tail...))
			got, err := ReadRequest(iotest.OneByteReader(r))
			if err != nil {
				t.Fatalf("ReadRequest(% x): %v", tt.wire, err)
			}
			if got != tt.req {
				t.Errorf("ReadRequest = %+v, want %+v", got, tt.req)
			}
			if rest, _ := io.ReadAll(r); string(rest) != tail {
				t.Errorf("left %q unread, want %q", rest, tail)
			}
		})
	}
}

func TestReadRequestRejects(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr error
		want    Request // what is parsed before the error
	}{
		{"empty", nil, io.EOF, Request{}},
		{"version 4", []byte{4, 1, 0, 1, 127, 0, 0, 1, 0, 80}, ErrVersion, Request{}},
		{"version 0", []byte{0, 1, 0, 1, 127, 0, 0, 1, 0, 80}, ErrVersion, Request{}},
		{"zero-length domain", []byte{5, 1, 0, 3, 0, 0, 80}, ErrMalformed, Request{Cmd: 1, AddrType: 3}},
		{"atyp 0", []byte{5, 1, 0, 0, 127, 0, 0, 1, 0, 80}, ErrAddressNotSupported, Request{Cmd: 1, AddrType: 0}},
		{"atyp 2", []byte{5, 1, 0, 2, 127, 0, 0, 1, 0, 80}, ErrAddressNotSupported, Request{Cmd: 1, AddrType: 2}},
		{"atyp 0xff", []byte{5, 2, 0, 0xff}, ErrAddressNotSupported, Request{Cmd: 2, AddrType: 0xff}},
		{"domain longer than sent", append([]byte{5, 1, 0, 3, 20}, "short"...), io.ErrUnexpectedEOF, Request{Cmd: 1, AddrType: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadRequest(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadRequest(% x) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("partial request = %+v, want %+v", got, tt.want)
			}
			if ReplyCode(err) == ReplySucceeded {
				t.Errorf("ReplyCode(%v) = succeeded", err)
			}
		})
	}
	if _, err := ReadRequest(bytes.NewReader([]byte{5, 1, 0, 2})); ReplyCode(err) != ReplyAddressNotSupported {
		t.Errorf("unknown atyp: ReplyCode(%v) = %#02x, want %#02x", err, ReplyCode(err), ReplyAddressNotSupported)
	}
}

// Every proper prefix of a message is an error — clean EOF only before the
// first byte — and never a panic.
func TestTruncated(t *testing.T) {
	check := func(t *testing.T, wire []byte, read func(io.Reader) error) {
		t.Helper()
		for i := range len(wire) {
			err := read(bytes.NewReader(wire[:i]))
			want := io.ErrUnexpectedEOF
			if i == 0 {
				want = io.EOF
			}
			if !errors.Is(err, want) {
				t.Errorf("cut at %d of % x: error = %v, want %v", i, wire, err, want)
			}
		}
	}
	for _, tt := range validRequests {
		check(t, tt.wire, func(r io.Reader) error { _, err := ReadRequest(r); return err })
	}
	check(t, []byte{5, 3, 0, 1, 2}, func(r io.Reader) error { _, err := ReadGreeting(r); return err })
	for _, wire := range validReplies {
		check(t, wire, func(r io.Reader) error { _, err := ReadReply(r); return err })
	}
}

func TestAppendRequest(t *testing.T) {
	for _, tt := range validRequests {
		got, err := AppendRequest([]byte("x"), tt.req)
		if err != nil {
			t.Errorf("%s: AppendRequest(%+v): %v", tt.name, tt.req, err)
			continue
		}
		if want := append([]byte("x"), tt.wire...); !bytes.Equal(got, want) {
			t.Errorf("%s: AppendRequest = % x, want % x", tt.name, got, want)
		}
	}

	// AddrType 0 picks the type from Host.
	auto := []struct {
		host string
		want byte
	}{
		{"192.0.2.1", AddrIPv4},
		{"2001:db8::1", AddrIPv6},
		{"::ffff:192.0.2.1", AddrIPv6},
		{"example.com", AddrDomain},
		{tunnelHost, AddrDomain},
		{"[::1]", AddrDomain},
	}
	for _, tt := range auto {
		b, err := AppendRequest(nil, Request{Cmd: CmdConnect, Host: tt.host, Port: 1})
		if err != nil {
			t.Errorf("AppendRequest(host %q): %v", tt.host, err)
			continue
		}
		req, err := ReadRequest(bytes.NewReader(b))
		if err != nil {
			t.Errorf("host %q: encoded % x does not parse: %v", tt.host, b, err)
			continue
		}
		if req.AddrType != tt.want || req.Host != tt.host {
			t.Errorf("host %q: got atyp %d host %q, want atyp %d", tt.host, req.AddrType, req.Host, tt.want)
		}
	}

	bad := []Request{
		{CmdConnect, AddrDomain, "", 1},
		{CmdConnect, AddrDomain, strings.Repeat("a", 256), 1},
		{CmdConnect, AddrIPv4, "example.com", 1},
		{CmdConnect, AddrIPv4, "::1", 1},
		{CmdConnect, AddrIPv6, "127.0.0.1", 1},
		{CmdConnect, AddrIPv6, "fe80::1%eth0", 1},
		{CmdConnect, 0, "fe80::1%eth0", 1},
		{CmdConnect, 0, "", 1},
		{CmdConnect, 2, "127.0.0.1", 1},
	}
	for _, req := range bad {
		b := []byte("keep")
		got, err := AppendRequest(b, req)
		if err == nil {
			t.Errorf("AppendRequest(%+v) = % x, want error", req, got)
		}
		if string(got) != "keep" {
			t.Errorf("AppendRequest(%+v) changed b to %q on error", req, got)
		}
	}
}

var validReplies = [][]byte{
	{5, 0, 0, 1, 0, 0, 0, 0, 0, 0},
	{5, 4, 0, 1, 10, 0, 0, 1, 0x30, 0x39},
	{5, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80},
	append(append([]byte{5, 0, 0, 3, 9}, "localhost"...), 0, 80),
}

func TestReadReply(t *testing.T) {
	for _, wire := range validReplies {
		r := bytes.NewReader(append(bytes.Clone(wire), tail...))
		code, err := ReadReply(iotest.OneByteReader(r))
		if err != nil {
			t.Errorf("ReadReply(% x): %v", wire, err)
			continue
		}
		if code != wire[1] {
			t.Errorf("ReadReply(% x) = %#02x, want %#02x", wire, code, wire[1])
		}
		if rest, _ := io.ReadAll(r); string(rest) != tail {
			t.Errorf("ReadReply(% x) left %q unread, want %q", wire, rest, tail)
		}
	}

	// What the server sends, the client reads.
	for code := range ReplyAddressNotSupported + 1 {
		got, err := ReadReply(bytes.NewReader(appendReply(nil, code)))
		if err != nil || got != code {
			t.Errorf("ReadReply(appendReply(%#02x)) = %#02x, %v", code, got, err)
		}
	}

	bad := []struct {
		in      []byte
		wantErr error
	}{
		{[]byte{4, 0, 0, 1, 0, 0, 0, 0, 0, 0}, ErrVersion},
		{[]byte{5, 0, 0, 2, 0, 0, 0, 0, 0, 0}, ErrAddressNotSupported},
		{[]byte{5, 0, 0, 3, 0, 0, 0}, ErrMalformed},
		{[]byte{5, 0, 0, 1, 0, 0}, io.ErrUnexpectedEOF},
	}
	for _, tt := range bad {
		code, err := ReadReply(bytes.NewReader(tt.in))
		if !errors.Is(err, tt.wantErr) {
			t.Errorf("ReadReply(% x) error = %v, want %v", tt.in, err, tt.wantErr)
		}
		if code == ReplySucceeded {
			t.Errorf("ReadReply(% x) failed yet returned code succeeded", tt.in)
		}
	}
}

// FuzzReadRequest checks that no input panics the parser, that a parsed
// request is exactly the bytes consumed (RSV aside, which is not kept), and
// that encoding it back parses to the same request.
func FuzzReadRequest(f *testing.F) {
	for _, tt := range validRequests {
		f.Add(tt.wire)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		req, err := ReadRequest(r)
		if err != nil {
			return
		}
		consumed := data[:len(data)-r.Len()]
		enc, err := AppendRequest(nil, req)
		if err != nil {
			t.Fatalf("parsed %+v from % x but cannot encode it: %v", req, consumed, err)
		}
		want := bytes.Clone(consumed)
		want[2] = 0
		if !bytes.Equal(enc, want) {
			t.Fatalf("parsed %+v from % x; re-encoded as % x", req, consumed, enc)
		}
		again, err := ReadRequest(bytes.NewReader(enc))
		if err != nil || again != req {
			t.Fatalf("re-encoded %+v as % x, which parses to %+v, %v", req, enc, again, err)
		}
	})
}

// FuzzReadGreeting checks that no input panics the parser and that it
// consumes exactly the header and the methods it returns.
func FuzzReadGreeting(f *testing.F) {
	f.Add([]byte{5, 1, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		methods, err := ReadGreeting(r)
		if err != nil {
			return
		}
		consumed := len(data) - r.Len()
		if len(methods) == 0 || consumed != 2+len(methods) || !bytes.Equal(methods, data[2:consumed]) {
			t.Fatalf("ReadGreeting(% x) = % x after consuming %d bytes", data, methods, consumed)
		}
	})
}

// FuzzReadReply checks that no input panics the client's parser.
func FuzzReadReply(f *testing.F) {
	for _, wire := range validReplies {
		f.Add(wire)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		code, err := ReadReply(r)
		if err != nil {
			return
		}
		want := 4 + 2 // header and port
		switch data[3] {
		case AddrIPv4:
			want += 4
		case AddrIPv6:
			want += 16
		case AddrDomain:
			want += 1 + int(data[4])
		}
		if consumed := len(data) - r.Len(); consumed != want || code != data[1] {
			t.Fatalf("ReadReply(% x) = %#02x after consuming %d bytes, want %d", data, code, consumed, want)
		}
	})
}

func TestUserPass(t *testing.T) {
	msg, err := AppendUserPass(nil, "alice", "pw")
	if err != nil || !bytes.Equal(msg, []byte{1, 5, 'a', 'l', 'i', 'c', 'e', 2, 'p', 'w'}) {
		t.Fatalf("AppendUserPass: % x, %v", msg, err)
	}
	// It reads exactly the message: the request behind it stays.
	r := bytes.NewReader(append(msg, 5, 1))
	user, pw, err := ReadUserPass(r)
	if err != nil || user != "alice" || pw != "pw" || r.Len() != 2 {
		t.Fatalf("ReadUserPass: %q %q %v, %d bytes left", user, pw, err, r.Len())
	}
	if user, pw, err := ReadUserPass(bytes.NewReader([]byte{1, 1, 'a', 0})); err != nil || user != "a" || pw != "" {
		t.Fatalf("empty password: %q %q %v; want it read (it matches nothing)", user, pw, err)
	}
	for _, bad := range [][]byte{
		{5, 1, 'a', 1, 'b'}, // the SOCKS version where the sub-negotiation's goes
		{1, 0, 1, 'b'},      // empty username
		{1, 5, 'a'},         // cut short
		{1, 1, 'a', 3, 'b'}, // password cut short
		{},
	} {
		if _, _, err := ReadUserPass(bytes.NewReader(bad)); err == nil {
			t.Errorf("% x: read without error", bad)
		}
	}
	for _, bad := range [][2]string{{"", "pw"}, {"u", ""}, {strings.Repeat("u", 256), "pw"}, {"u", strings.Repeat("p", 256)}} {
		if _, err := AppendUserPass(nil, bad[0], bad[1]); err == nil {
			t.Errorf("AppendUserPass(%d bytes, %d bytes) took it", len(bad[0]), len(bad[1]))
		}
	}
}

func FuzzReadUserPass(f *testing.F) {
	f.Add([]byte{1, 5, 'a', 'l', 'i', 'c', 'e', 2, 'p', 'w'})
	f.Add([]byte{1, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		user, pw, err := ReadUserPass(bytes.NewReader(b))
		if err == nil && (len(user) == 0 || len(user) > 255 || len(pw) > 255 || 3+len(user)+len(pw) > len(b)) {
			t.Fatalf("% x: %q %q", b, user, pw)
		}
	})
}

package socks

import (
	"io"
	"net"
	"testing"
)

// A prefixConn reads its prefix first, then the connection; once the
// prefix is read, drained sees through it (and through any stack of them)
// to the connection, and not before.
func TestPrefixConnDrained(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() { _, _ = b.Write([]byte("rest")) }()
	inner := &prefixConn{Conn: a, prefix: []byte("h")}
	outer := &prefixConn{Conn: inner, prefix: []byte("e")}
	if got := drained(outer); got != outer {
		t.Fatalf("drained with both prefixes unread: %T %p, want the outer prefixConn", got, got)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(outer, buf); err != nil || string(buf) != "ehrest" {
		t.Fatalf("read %q, %v; want %q", buf, err, "ehrest")
	}
	if got := drained(outer); got != a {
		t.Fatalf("drained after both prefixes were read: %T, want the connection underneath", got)
	}
	if got := drained(a); got != a {
		t.Fatalf("drained of a plain connection: %T", got)
	}
}

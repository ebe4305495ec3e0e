// Package tcptest runs throwaway TCP services on loopback for the tests of
// other packages, as net/http/httptest does for HTTP: a service with a
// handler, an echo, an address nothing listens on.
//
// Everything it starts ends when the test ends: the listener is closed,
// every connection still open is closed, and cleanup waits for every
// goroutine it started, so a caller's goleak check sees none of them.
package tcptest

import (
	"io"
	"net"
	"sync"
	"testing"
)

// Serve listens on 127.0.0.1:0 and returns the address; see ServeListener.
func Serve(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcptest: listen: %v", err)
	}
	ServeListener(t, ln, handle)
	return ln.Addr().String()
}

// ServeListener runs handle for each connection ln accepts, each in its
// own goroutine, and closes the connection when handle returns. When the
// test ends, ln and the connections still open are closed (a handler
// blocked on one returns) and cleanup waits for the handlers.
func ServeListener(t testing.TB, ln net.Listener, handle func(net.Conn)) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open = map[net.Conn]struct{}{}
		done bool
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		done = true
		for c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if done {
				mu.Unlock()
				c.Close()
				return
			}
			open[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(open, c)
					mu.Unlock()
					c.Close()
				}()
				handle(c)
			})
		}
	})
}

// Echo is a service that sends back what it reads until EOF, then
// half-closes its side, so a client sees its own bytes and then EOF.
func Echo(t testing.TB) string {
	t.Helper()
	return Serve(t, EchoConn)
}

// EchoConn is Echo's handler, for a listener of the caller's (TLS, say).
func EchoConn(c net.Conn) {
	_, _ = io.Copy(c, c)
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
	}
}

// ClosedPort is a loopback address nothing listens on: connecting to it is
// refused.
func ClosedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("tcptest: listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

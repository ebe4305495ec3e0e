package metrics

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestCheckListen(t *testing.T) {
	for _, c := range []struct {
		addr   string
		remote bool
		want   error // nil, ErrRemote, or errBad for any other error
	}{
		{"127.0.0.1:9100", false, nil},
		{"127.0.0.2:0", false, nil},
		{"[::1]:9100", false, nil},
		{"localhost:9100", false, nil},
		{"0.0.0.0:9100", false, ErrRemote},
		{":9100", false, ErrRemote},
		{"[::]:9100", false, ErrRemote},
		{"192.0.2.1:9100", false, ErrRemote},
		{"metrics.example:9100", false, ErrRemote},
		{"0.0.0.0:9100", true, nil},
		{":9100", true, nil},
		{"127.0.0.1", false, errBad},
		{"127.0.0.1:notaport", false, errBad},
	} {
		err := CheckListen(c.addr, c.remote)
		switch {
		case c.want == nil && err != nil, c.want == ErrRemote && !errors.Is(err, ErrRemote),
			c.want == errBad && (err == nil || errors.Is(err, ErrRemote)):
			t.Errorf("CheckListen(%q, %v) = %v, want %v", c.addr, c.remote, err, c.want)
		}
	}
}

var errBad = errors.New("bad address")

// A non-loopback address without allowRemote is refused before anything
// listens: the port stays free.
func TestListenRefusesRemote(t *testing.T) {
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s, err := Listen(addr, false, NewRegistry(NewCollector()))
	if !errors.Is(err, ErrRemote) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Listen(%s) = %v, want ErrRemote", addr, err)
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port of the refused address taken: %v", err)
	}
	ln.Close()
}

func startServer(t *testing.T) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", false, NewRegistry(NewCollector()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestServesMetrics(t *testing.T) {
	s := startServer(t)
	res, err := http.Get("http://" + s.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), "go_goroutines") || !strings.Contains(string(body), "process_") {
		t.Fatalf("status %d, body without the Go or process collectors:\n%.500s", res.StatusCode, body)
	}
	res, err = http.Get("http://" + s.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /: %d, want 404", res.StatusCode)
	}
}

// What a client can make the listener hold is bounded: a connection that
// never finishes its headers is closed after readHeaderTimeout, headers
// past maxHeaderBytes get 431, and past maxConns connections wait unread
// in the kernel's backlog while a scrape on one of the first still works.
func TestListenerBounded(t *testing.T) {
	old := readHeaderTimeout
	readHeaderTimeout = 300 * time.Millisecond
	defer func() { readHeaderTimeout = old }()
	s := startServer(t)
	addr := s.Addr().String()

	slow, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: "); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_ = slow.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(slow); err != nil {
		t.Fatalf("slow client: %v, want the server to close it", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("slow client held %v", took)
	}

	big, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	req := "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n"
	go io.WriteString(big, req) // the server may close before reading it all
	_ = big.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(big), nil)
	if err != nil {
		t.Fatalf("big headers: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("big headers: %d, want 431", res.StatusCode)
	}

	// maxConns idle connections that sent nothing: one more is accepted by
	// the kernel but not served until one of them goes.
	var idle []net.Conn
	for range maxConns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond) // let the server accept them
	extra, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	if _, err := io.WriteString(extra, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	_ = extra.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if n, err := extra.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("connection past the cap answered (%d bytes, %v)", n, err)
	}
	// The idle ones time out (readHeaderTimeout), and then it is served.
	_ = extra.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err = http.ReadResponse(bufio.NewReader(extra), nil)
	if err != nil {
		t.Fatalf("waiting connection after the idle ones timed out: %v", err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("waiting connection: %d", res.StatusCode)
	}
}

//go:build linux

package e2e

// Small loopback servers the tests publish through the tunnel: an HTTP server
// that echoes the Host header it saw, a byte counter that reads to EOF and
// then answers (the half-close check), and an echo server.

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

type httpServer struct {
	port int
	srv  *http.Server
}

// httpBody is what the server answers for any request.
func httpBody(host string) string { return "tunnel-e2e ok host=" + host + "\n" }

func startHTTPServer() (*httpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &httpServer{port: ln.Addr().(*net.TCPAddr).Port}
	h.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("X-Seen-Host", r.Host)
			_, _ = io.WriteString(w, httpBody(r.Host))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = h.srv.Serve(ln) }()
	return h, nil
}

func (h *httpServer) close() { _ = h.srv.Close() }

// tcpServer serves each connection with handle, under a 2-minute deadline.
type tcpServer struct {
	port int
	ln   net.Listener
	wg   sync.WaitGroup
}

func startTCPServer(handle func(*net.TCPConn)) (*tcpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &tcpServer{port: ln.Addr().(*net.TCPAddr).Port, ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return s, nil
}

func (s *tcpServer) close() { _ = s.ln.Close() }

// countHandler reads to EOF, then writes the byte count and a newline and
// closes: it only answers if the client's half-close came through.
func countHandler(c *net.TCPConn) {
	n, _ := io.Copy(io.Discard, c)
	_, _ = fmt.Fprintf(c, "%d\n", n)
}

// echoHandler copies input to output and half-closes after the input's EOF.
func echoHandler(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

// closedPort returns a loopback TCP port with (as far as we know) nothing
// listening on it.
func closedPort() (int, error) { return freePortErr("tcp") }

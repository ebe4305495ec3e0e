//go:build linux

package main

// The services every path ends at, all in this process on 127.0.0.1:
// a sink that discards (uploads), a source that generates (downloads), and
// an echo. The sink measures uploads where the bytes arrive; downloads are
// measured where they arrive too, at the client (bulk.go).

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

type servers struct {
	sink, source, echo net.Listener

	// Per bulk measurement, set before the client starts.
	limitBytes atomic.Int64
	limitTime  atomic.Int64 // nanoseconds

	sunk chan xfer // one per upload connection
	sent chan xfer // one per download connection

	wg sync.WaitGroup
}

// xfer is what one bulk connection moved. Start is when the first byte
// arrived (sink) or was written (source); End when the last one arrived
// (sink) or zero (source: the client sees the end).
type xfer struct {
	Bytes      int64
	Start, End time.Time
	Capped     bool // stopped by the time limit, not the byte count
	Err        error
}

func startServers() (*servers, error) {
	s := &servers{sunk: make(chan xfer, 16), sent: make(chan xfer, 16)}
	var err error
	for _, l := range []*net.Listener{&s.sink, &s.source, &s.echo} {
		if *l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			s.close()
			return nil, err
		}
	}
	s.wg.Go(func() { s.serve(s.sink, s.sinkConn) })
	s.wg.Go(func() { s.serve(s.source, s.sourceConn) })
	s.wg.Go(func() { s.serve(s.echo, echoConn) })
	return s, nil
}

func (s *servers) close() {
	for _, l := range []net.Listener{s.sink, s.source, s.echo} {
		if l != nil {
			l.Close()
		}
	}
}

func port(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }

func (s *servers) serve(l net.Listener, handle func(*net.TCPConn)) {
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. EMFILE under the 1,000-stream test: retry
		}
		go handle(c.(*net.TCPConn))
	}
}

// setLimits sets the byte count and time cap of the next bulk transfer.
func (s *servers) setLimits(n int64, d time.Duration) {
	s.limitBytes.Store(n)
	s.limitTime.Store(int64(d))
	drain(s.sunk)
	drain(s.sent)
}

func drain(ch chan xfer) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// sinkConn reads until EOF, the byte count or the time cap (counted from
// the first byte), whichever comes first.
func (s *servers) sinkConn(c *net.TCPConn) {
	defer c.Close()
	limit, capTime := s.limitBytes.Load(), time.Duration(s.limitTime.Load())
	buf := make([]byte, 256<<10)
	var x xfer
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if x.Bytes == 0 {
				x.Start = time.Now()
				_ = c.SetReadDeadline(x.Start.Add(capTime))
			}
			x.Bytes += int64(n)
		}
		if x.Bytes >= limit {
			x.End = time.Now()
			break
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				x.End, x.Capped = x.Start.Add(capTime), true
			} else if errors.Is(err, io.EOF) {
				x.End = time.Now()
				x.Err = fmt.Errorf("EOF after %d of %d bytes", x.Bytes, limit)
			} else {
				x.End, x.Err = time.Now(), err
			}
			break
		}
	}
	if x.Capped {
		_ = c.SetLinger(0) // the client is still sending: reset, don't drain
	}
	select {
	case s.sunk <- x:
	default:
	}
}

// sourceConn writes zeros until the byte count or the time cap, then
// half-closes and waits for the client to close.
func (s *servers) sourceConn(c *net.TCPConn) {
	defer c.Close()
	limit, capTime := s.limitBytes.Load(), time.Duration(s.limitTime.Load())
	buf := make([]byte, 256<<10)
	x := xfer{Start: time.Now()}
	deadline := x.Start.Add(capTime)
	for x.Bytes < limit {
		if time.Now().After(deadline) {
			x.Capped = true
			break
		}
		b := buf
		if rest := limit - x.Bytes; rest < int64(len(b)) {
			b = b[:rest]
		}
		n, err := c.Write(b)
		x.Bytes += int64(n)
		if err != nil {
			x.Err = err
			break
		}
	}
	select {
	case s.sent <- x:
	default:
	}
	if x.Err == nil {
		_ = c.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(60 * time.Second))
		_, _ = io.Copy(io.Discard, c)
	}
}

// echoConn sends back what it reads and half-closes after the client's EOF.
func echoConn(c *net.TCPConn) {
	defer c.Close()
	if _, err := io.Copy(c, c); err == nil {
		_ = c.CloseWrite()
	}
}

// ---- ports ----

var (
	portsMu sync.Mutex
	ports   = map[int]bool{}
)

// freePort takes a TCP port from the kernel that this run has not handed
// out before.
func freePort() (int, error) { return freePortNet("tcp") }

func freePortNet(network string) (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 50 {
		var p int
		if network == "udp" {
			c, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			p = c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				return 0, err
			}
			p = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
		if !ports[p] {
			ports[p] = true
			return p, nil
		}
	}
	return 0, errors.New("no free port")
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

// waitTCP polls until something accepts on address, or p dies.
func waitTCP(address string, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", address, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil {
			if err := p.alive(); err != nil {
				return err
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listening on %s after %s: %v", address, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/net/netutil"
)

// ErrRemote refuses a listening address beyond loopback that was not
// allowed: whoever reaches /metrics learns how busy the node is and whom
// its limits refuse.
var ErrRemote = errors.New("not a loopback address")

// What a client of the metrics listener can hold. A scrape is a few
// hundred lines; anything slower or bigger than these is not Prometheus.
const (
	maxConns        = 8
	readTimeout     = 10 * time.Second
	writeTimeout    = 30 * time.Second
	idleTimeout     = 60 * time.Second
	maxHeaderBytes  = 8 << 10
	scrapeTimeout   = 10 * time.Second
	shutdownTimeout = 2 * time.Second
)

// readHeaderTimeout bounds a request's line and headers; a test shortens it.
var readHeaderTimeout = 5 * time.Second

// CheckListen checks a --metrics address: HOST:PORT, loopback (127.0.0.0/8,
// ::1 or localhost) unless allowRemote. A host left empty means every
// address, so it too needs allowRemote.
func CheckListen(addr string, allowRemote bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--metrics %q: want HOST:PORT: %v", addr, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("--metrics %q: bad port %q", addr, port)
	}
	if allowRemote || host == "localhost" {
		return nil
	}
	if a, err := netip.ParseAddr(host); err == nil && a.IsLoopback() {
		return nil
	}
	return fmt.Errorf("--metrics %s: %w; give --metrics-allow-remote to serve it beyond this machine", addr, ErrRemote)
}

// NewRegistry returns a registry of this process alone: c's series, and
// the Go runtime's and the process's.
func NewRegistry(c *Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Server serves /metrics on its own listener.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	once sync.Once
}

// Listen checks addr (CheckListen), listens on it and serves g's metrics
// at /metrics until Close.
func Listen(addr string, allowRemote bool, g prometheus.Gatherer) (*Server, error) {
	if err := CheckListen(addr, allowRemote); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 1,
		Timeout:             scrapeTimeout,
	}))
	s := &Server{
		// Past maxConns, connections wait in the kernel's backlog, unread.
		ln: netutil.LimitListener(ln, maxConns),
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, ReadTimeout: readTimeout,
			WriteTimeout: writeTimeout, IdleTimeout: idleTimeout, MaxHeaderBytes: maxHeaderBytes,
			ErrorLog: log.New(io.Discard, "", 0)},
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(s.ln)
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, letting a scrape under way finish for a moment,
// and returns once it has stopped.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err = s.srv.Shutdown(ctx); err != nil {
			err = s.srv.Close()
		}
	})
	<-s.done
	return err
}

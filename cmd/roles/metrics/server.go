package metrics

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

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

// A Registry is what one process serves: a Collector's series and the Go
// runtime's (go_*) and the process's (process_*), under the names
// Prometheus's own Go and process collectors give them.
type Registry struct{ c *Collector }

// NewRegistry returns the registry of c (nil: the runtime and process
// series alone).
func NewRegistry(c *Collector) *Registry { return &Registry{c: c} }

// Gather reads every series now, families sorted by name and samples by
// label values.
func (r *Registry) Gather() []Family {
	var fams []Family
	if r.c != nil {
		fams = r.c.Gather()
	}
	fams = append(fams, runtimeFamilies()...)
	fams = append(fams, processFamilies()...)
	for i := range fams {
		fams[i].sortSamples()
	}
	slices.SortFunc(fams, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	return fams
}

// Server serves /metrics on its own listener.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
	once sync.Once
}

// Listen checks addr (CheckListen), listens on it and serves reg's series
// at /metrics until Close, one scrape at a time (another at the same
// moment gets 503).
func Listen(addr string, allowRemote bool, reg *Registry) (*Server, error) {
	if err := CheckListen(addr, allowRemote); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", newScraper(reg))
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

// scraper answers a scrape with reg's series in the text format, one at
// a time (each reads /proc and the runtime's state): another at the same
// moment gets 503 at once.
type scraper struct {
	reg  *Registry
	busy chan struct{} // holds a token while a scrape is answered
}

func newScraper(reg *Registry) *scraper { return &scraper{reg: reg, busy: make(chan struct{}, 1)} }

func (s *scraper) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case s.busy <- struct{}{}:
		defer func() { <-s.busy }()
	default:
		http.Error(w, "another scrape is under way", http.StatusServiceUnavailable)
		return
	}
	var b bytes.Buffer
	_ = WriteText(&b, s.reg.Gather()) // a bytes.Buffer does not fail
	w.Header().Set("Content-Type", ContentType)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
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

package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// Dialer opens streams to device ports; *dialer.Dialer is one. Its errors
// are classified by dialer.Classify, which decides the status the client
// gets.
type Dialer interface {
	DialDevice(ctx context.Context, id identity.ID, port uint16) (transport.HalfConn, error)
}

// Timeouts of the gateway.
const (
	// DefaultDialTimeout bounds opening a stream to a device: lookup,
	// end-to-end handshake and the device's answer.
	DefaultDialTimeout = 10 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for a device's web
	// server to start its response once the request is sent.
	DefaultResponseHeaderTimeout = 30 * time.Second

	readHeaderTimeout = 10 * time.Second // a client's request line and headers
	idleTimeout       = 60 * time.Second // a client's idle keep-alive connection
	maxHeaderBytes    = 32 << 10
)

// HTTP is the gateway's HTTP(S) front, an http.Handler: it routes each
// request by its Host (see ParseHost) to a device port, one stream per
// request, through an httputil.ReverseProxy. The device's web server gets
// the Host the user typed, unchanged, plus X-Forwarded-For (the TCP peer's
// address), X-Forwarded-Host (that Host again) and X-Forwarded-Proto (http
// or https); any such headers the client sent are dropped. Responses are
// passed on as they arrive (no buffering), and upgrades (WebSocket) become
// a byte pipe. Failures are answered at once with a small page: 400 for a
// Host the gateway does not serve, 404 for a name that is no device, 403
// for a port that is not public, 502 for an offline device or a port not
// published or refused, 504 for a timeout, 429 over the Limiter's budget.
type HTTP struct {
	// Domain is the gateway's domain, lowercase without a trailing dot
	// (CheckDomain normalizes it).
	Domain  string
	Dialer  Dialer
	Limiter *Limiter // nil: no limits
	Log     zerolog.Logger
	// DialTimeout and ResponseHeaderTimeout: zero means the defaults.
	DialTimeout           time.Duration
	ResponseHeaderTimeout time.Duration
	// Requests counts the requests answered, by status.
	Requests RequestCounts

	once      sync.Once
	proxy     *httputil.ReverseProxy
	transport *http.Transport
}

func (h *HTTP) init() {
	h.once.Do(func() {
		rht := h.ResponseHeaderTimeout
		if rht <= 0 {
			rht = DefaultResponseHeaderTimeout
		}
		h.transport = &http.Transport{
			Proxy:       nil, // never an environment proxy
			DialContext: h.dial,
			// One stream per request: a device stream then belongs to one
			// client's request and counts against that client's budget.
			DisableKeepAlives:      true,
			DisableCompression:     true, // pass bodies as the device sent them
			ResponseHeaderTimeout:  rht,
			ExpectContinueTimeout:  time.Second,
			MaxResponseHeaderBytes: 64 << 10,
		}
		h.proxy = &httputil.ReverseProxy{
			Rewrite:        h.rewrite,
			Transport:      h.transport,
			FlushInterval:  -1,
			ErrorHandler:   h.proxyError,
			ModifyResponse: h.modifyResponse,
			ErrorLog:       debugLog(h.Log, "http proxy"),
		}
	})
}

// reqState follows one request from ServeHTTP through the Transport's
// dial (the dial runs on a goroutine of its own and sees the request's
// context values, not its cancellation).
type reqState struct {
	target  DeviceAddr
	tracker *tracker

	mu       sync.Mutex
	conn     *streamConn
	dialErr  error
	err      error
	upstream int // status of the device's response
}

type stateKey struct{}

func stateOf(ctx context.Context) *reqState {
	st, _ := ctx.Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP implements http.Handler.
func (h *HTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.init()
	st := &reqState{tracker: trackerOf(r.Context())}
	if st.tracker != nil {
		st.tracker.add()
		defer st.tracker.done()
	}
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	logIt := true
	defer func() {
		p := recover()
		if p != nil && p != http.ErrAbortHandler {
			h.Log.Error().Str("client", r.RemoteAddr).Interface("panic", p).Msg("http handler panicked")
			if rec.status == 0 {
				// Nothing sent yet: the client still gets a proper answer.
				h.page(rec, r, http.StatusInternalServerError, "Gateway error", "The gateway failed; this is a bug.")
				p = nil
			}
		}
		if p == http.ErrAbortHandler {
			st.setErr(errors.New("response aborted"))
		}
		h.Requests.count(st.status(rec))
		if logIt {
			h.logRequest(r, rec, st, start)
		}
		if p != nil {
			panic(http.ErrAbortHandler) // cut the response short, no stack dump
		}
	}()

	// Every request counts, routable or not, so that a flood of junk is
	// refused (and logged once per source per 10 s) like any other.
	if h.Limiter != nil {
		release, err := h.Limiter.Acquire(remoteIP(r.RemoteAddr))
		if err != nil {
			st.setErr(err)
			retry := time.Second
			if le, ok := errors.AsType[*LimitError](err); ok {
				retry, logIt = le.RetryAfter, le.Report
			}
			rec.Header().Set("Retry-After", strconv.Itoa(int(retry/time.Second)))
			h.page(rec, r, http.StatusTooManyRequests, "Too many requests",
				"Too many requests from your address; try again in a moment.")
			return
		}
		defer release()
	}

	id, port, err := ParseHost(r.Host, h.Domain)
	if err != nil {
		st.setErr(err)
		if errors.Is(err, ErrForeignHost) {
			h.page(rec, r, http.StatusBadRequest, "Unknown host",
				fmt.Sprintf("This gateway serves <device-id>.%s and <device-id>-<port>.%s only.", h.Domain, h.Domain))
		} else {
			h.page(rec, r, http.StatusNotFound, "No such device name",
				fmt.Sprintf("Use <device-id>.%s for a device's port 80, or <device-id>-<port>.%s for another port.", h.Domain, h.Domain))
		}
		return
	}
	st.target = DeviceAddr{ID: id, Port: port}
	if r.Method == http.MethodConnect {
		st.setErr(errors.New("CONNECT is not served"))
		rec.Header().Set("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS")
		h.page(rec, r, http.StatusMethodNotAllowed, "Not a proxy", "This gateway is not a forward proxy.")
		return
	}
	h.proxy.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), stateKey{}, st)))
}

func (h *HTTP) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In.Context())
	pr.Out.URL.Scheme = "http"
	// The Transport dials this; it names the device port, so no two
	// devices ever share a connection.
	pr.Out.URL.Host = st.target.String()
	// The device's web server sees the name the user typed.
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
}

// dial is the Transport's DialContext: addr is a DeviceAddr.
func (h *HTTP) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	st := stateOf(ctx)
	if st != nil && st.tracker != nil {
		st.tracker.add()
		defer st.tracker.done()
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	id, isTunnel, err := resolver.ParseName(host)
	port, perr := strconv.ParseUint(p, 10, 16)
	if err != nil || !isTunnel || perr != nil {
		return nil, fmt.Errorf("gateway: dial %q: not a device address", addr)
	}
	timeout := h.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hc, err := h.Dialer.DialDevice(ctx, id, uint16(port))
	if err == nil && hc == nil {
		err = errors.New("gateway: dialer returned neither a stream nor an error")
	}
	var c *streamConn
	if err == nil {
		// Serve waits for the stream too: net/http closes it on a
		// goroutine of its own, and a clean close drains it first.
		var closed func()
		if st != nil && st.tracker != nil {
			st.tracker.add()
			closed = st.tracker.done
		}
		c = newStreamConn(hc, DeviceAddr{ID: id, Port: uint16(port)}, closed)
	}
	if st != nil {
		st.mu.Lock()
		st.conn, st.dialErr = c, err
		st.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (h *HTTP) modifyResponse(res *http.Response) error {
	if st := stateOf(res.Request.Context()); st != nil {
		st.mu.Lock()
		st.upstream = res.StatusCode
		st.mu.Unlock()
	}
	return nil
}

// proxyError answers a request the device could not serve, by the
// device's verdict when the dial failed (net/http may wrap or replace the
// dial's error).
func (h *HTTP) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	st := stateOf(r.Context())
	if st != nil {
		st.mu.Lock()
		if st.dialErr != nil {
			err = st.dialErr
		}
		st.mu.Unlock()
		st.setErr(err)
	}
	port := 0
	if st != nil {
		port = int(st.target.Port)
	}
	switch dialer.Classify(err) {
	case dialer.Denied, dialer.NotTunnel:
		h.page(w, r, http.StatusForbidden, "This port is not public",
			fmt.Sprintf("The device's owner has not published port %d to everyone, so this public gateway may not reach it.", port))
	case dialer.RegistryUnavailable:
		h.page(w, r, http.StatusBadGateway, "Rendezvous node unreachable",
			"The gateway cannot reach its rendezvous node right now; try again in a moment.")
	case dialer.MalformedName, dialer.Offline, dialer.NoDirectPath, dialer.HostUnreachable:
		h.page(w, r, http.StatusBadGateway, "Device offline or unknown",
			"No device with this ID is online.")
	case dialer.NotPublished:
		h.page(w, r, http.StatusBadGateway, "Port not published",
			fmt.Sprintf("The device is online but publishes nothing on port %d.", port))
	case dialer.Refused:
		h.page(w, r, http.StatusBadGateway, "Connection refused",
			fmt.Sprintf("The device's service on port %d refused the connection.", port))
	case dialer.Timeout:
		h.page(w, r, http.StatusGatewayTimeout, "Timed out",
			"The device, or its service, did not answer in time.")
	default:
		h.page(w, r, http.StatusBadGateway, "Bad gateway",
			"The device's service did not give a valid HTTP response.")
	}
}

// page writes an error page: HTML for browsers, one line of text for the
// rest. Nothing of the request is echoed into it.
func (h *HTTP) page(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	hdr := w.Header()
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Content-Type-Options", "nosniff")
	var body string
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		t, d := html.EscapeString(title), html.EscapeString(detail)
		body = fmt.Sprintf("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>%d %s</title></head>\n"+
			"<body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>%s</h1>\n<p>%s</p>\n"+
			"<p><small>%d %s · tunnel gateway</small></p></body></html>\n",
			status, t, t, d, status, html.EscapeString(http.StatusText(status)))
	} else {
		hdr.Set("Content-Type", "text/plain; charset=utf-8")
		body = fmt.Sprintf("%d %s: %s\n", status, title, detail)
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}

// logRequest writes the one line each request gets.
func (h *HTTP) logRequest(r *http.Request, rec *recorder, st *reqState, start time.Time) {
	status := st.status(rec)
	st.mu.Lock()
	err, conn := st.err, st.conn
	st.mu.Unlock()
	ev := h.Log.Info()
	if status >= 500 && dialer.Classify(err) == dialer.Failed {
		ev = h.Log.Warn()
	}
	if ev == nil {
		return
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	ev = ev.Str("client", r.RemoteAddr).Str("proto", proto).Str("host", trunc(r.Host)).Str("method", trunc(r.Method))
	if !st.target.ID.IsZero() {
		ev = ev.Str("peer", st.target.ID.Short()).Uint16("port", st.target.Port)
	}
	ev = ev.Int("status", status)
	if err != nil {
		ev = ev.Err(err)
	}
	if le, ok := errors.AsType[*LimitError](err); ok && le.Suppressed > 0 {
		ev = ev.Int("suppressed", le.Suppressed)
	}
	var up, down int64
	if conn != nil {
		up, down = conn.Bytes()
	}
	ev.Int64("up", up).Int64("down", down).Dur("dur", time.Since(start)).Msg("http request")
}

// status is the status the client got: 101 for an upgrade, 0 if none.
func (st *reqState) status(rec *recorder) int {
	st.mu.Lock()
	defer st.mu.Unlock()
	if rec.status == 0 && st.upstream == http.StatusSwitchingProtocols {
		return http.StatusSwitchingProtocols
	}
	return rec.status
}

func (st *reqState) setErr(err error) {
	st.mu.Lock()
	if st.err == nil {
		st.err = err
	}
	st.mu.Unlock()
}

// Serve serves h on ln until ctx ends or ln fails, over TLS when tlsConfig
// is not nil (HTTP/1.1 only: upgrades work, and each request is one
// stream the Limiter counts). With a Limiter, each source may hold
// MaxStreams connections open; more are closed on accept. Ending ctx
// aborts every request, upgraded connections included, and Serve returns
// only once each request it served, and each dial and stream they started,
// has ended. It returns nil on ctx-driven shutdown.
func (h *HTTP) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	h.init()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tr := newTracker()
	if h.Limiter != nil {
		ln = &limitListener{Listener: ln, lim: h.Limiter, onDeny: func(ip netip.Addr, le *LimitError) {
			if le.Report {
				h.Log.Info().Str("client", ip.String()).Int("suppressed", le.Suppressed).Err(le).Msg("http connection refused")
			}
		}}
	}
	if tlsConfig != nil {
		cfg := tlsConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		if cfg.MinVersion == 0 {
			cfg.MinVersion = tls.VersionTLS12
		}
		ln = tls.NewListener(ln, cfg)
	}
	var protos http.Protocols
	protos.SetHTTP1(true)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		Protocols:         &protos,
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(ctx, trackerKey{}, tr)
		},
		ErrorLog: debugLog(h.Log, "http server"),
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
	}
	cancel()
	srv.Close()
	if err == nil {
		err = <-done
	}
	tr.wait()
	h.transport.CloseIdleConnections()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// recorder notes the status and passes everything else on; Unwrap lets
// http.ResponseController reach Flush and Hijack underneath.
type recorder struct {
	http.ResponseWriter
	status int
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.ResponseWriter.Write(p)
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// remoteIP is the IP of the TCP peer of a request.
func remoteIP(remoteAddr string) netip.Addr {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// tracker counts a server's requests, their dials and streams, so that Serve can
// wait for them. Unlike a WaitGroup it may gain members while waited on.
type tracker struct {
	mu   sync.Mutex
	cond *sync.Cond
	n    int
}

type trackerKey struct{}

func newTracker() *tracker {
	t := &tracker{}
	t.cond = sync.NewCond(&t.mu)
	return t
}

func trackerOf(ctx context.Context) *tracker {
	t, _ := ctx.Value(trackerKey{}).(*tracker)
	return t
}

func (t *tracker) add() { t.mu.Lock(); t.n++; t.mu.Unlock() }
func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 {
		t.cond.Broadcast()
	}
	t.mu.Unlock()
}
func (t *tracker) wait() {
	t.mu.Lock()
	for t.n > 0 {
		t.cond.Wait()
	}
	t.mu.Unlock()
}

// debugLog turns net/http's error log (TLS handshakes of scanners, broken
// body copies) into debug lines.
func debugLog(l zerolog.Logger, what string) *log.Logger {
	return log.New(debugWriter{l.With().Str("component", what).Logger()}, "", 0)
}

type debugWriter struct{ l zerolog.Logger }

func (w debugWriter) Write(p []byte) (int, error) {
	w.l.Debug().Msg(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

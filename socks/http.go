package socks

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/transport"
)

// HTTPFront serves, on the SOCKS port, what browsers and HTTP-only tools
// need: the PAC file at /proxy.pac (also /wpad.dat), which sends only
// .tunnel hosts to this SOCKS server, HTTP CONNECT for tools that speak
// only HTTP proxies (git, npm, many IDEs), and plain forward-proxy
// requests in absolute form (http_proxy: wget, apt, pip; httpproxy.go).
// CONNECT and forwarding use the same Dial, and so the same rules, as
// SOCKS: it is never an open proxy; and the same door: with Auth, they
// need Proxy-Authorization Basic with a user and password of the file
// (else 407); without, Admit decides (else 403).
// The PAC file and the help page are served to anyone: they hold nothing
// but this proxy's address, which whoever fetches them already knows, and
// browsers fetch PAC files without credentials.
//
// A request line and headers of more than 64 KiB get 431: reading them
// costs at most that, whatever a client sends.
type HTTPFront struct {
	Dial DialFunc
	Log  zerolog.Logger
	// Listen is the SOCKS address to put in the PAC file when the request
	// does not say how it reached us.
	Listen string
	// HandshakeTimeout bounds reading the request; default 10 s.
	HandshakeTimeout time.Duration
	// DialTimeout bounds a CONNECT's dial; default 30 s.
	DialTimeout time.Duration
	// Auth and Admit are the Server's (see there).
	Auth  *Authenticator
	Admit func(net.Conn) error
}

// maxRequestHeader bounds a request line and its headers. Go's
// http.ReadRequest has no bound of its own: a 200 MiB header line made it
// allocate 1.3 GiB.
const maxRequestHeader = 64 << 10

// proxyRealm is the realm a 407 names; browsers show it in their prompt.
const proxyRealm = "tunnel"

// PAC returns the proxy auto-config script for a SOCKS server at addr.
func PAC(addr string) string {
	return `// tunnel: send <device-id>.tunnel names to the SOCKS5 proxy, everything else direct.
function FindProxyForURL(url, host) {
  host = host.toLowerCase();
  if (host == "tunnel" || dnsDomainIs(host, ".tunnel")) {
    return "SOCKS5 ` + addr + `";
  }
  return "DIRECT";
}
`
}

// ServeConn handles one connection whose first byte was not SOCKS; it
// returns when the connection is finished, having closed c. It calls
// admitted once the client is authorized, or its request answered.
func (h *HTTPFront) ServeConn(ctx context.Context, c net.Conn, admitted func()) {
	defer c.Close()
	if admitted == nil {
		admitted = func() {}
	}
	defer admitted()
	start := time.Now()
	hs := h.HandshakeTimeout
	if hs <= 0 {
		hs = defaultHandshakeTimeout
	}
	deadline := start.Add(hs)
	_ = c.SetDeadline(deadline)
	// Until splicing starts, ending ctx interrupts the reads and writes.
	stopWatch := afterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stopWatch()
	lr := &io.LimitedReader{R: c, N: maxRequestHeader}
	br := bufio.NewReader(lr)
	req, err := http.ReadRequest(br)
	if err != nil {
		if lr.N == 0 {
			writeResponse(c, http.StatusRequestHeaderFieldsTooLarge, "text/plain; charset=utf-8",
				fmt.Sprintf("Request line and headers are limited to %d KiB.\n", maxRequestHeader>>10), false)
			lingerClose(c)
		}
		h.Log.Debug().Str("client", remote(c)).Err(err).Msg("http request unreadable")
		return
	}
	log := h.Log.With().Str("client", remote(c)).Str("method", req.Method).Logger()
	switch {
	case req.Method == http.MethodConnect:
		user, ok := h.authorize(ctx, c, req, deadline, log)
		if !ok {
			return
		}
		admitted()
		if user != "" {
			log = log.With().Str("user", user).Logger()
		}
		stopWatch()
		h.connect(ctx, c, br, req, start, log)
	case isForward(req):
		user, ok := h.authorize(ctx, c, req, deadline, log)
		if !ok {
			return
		}
		admitted()
		if user != "" {
			log = log.With().Str("user", user).Logger()
		}
		stopWatch()
		h.forward(ctx, c, lr, br, req, start, log)
	case (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.URL.Path == "/proxy.pac" || req.URL.Path == "/wpad.dat"):
		body := PAC(h.pacAddr(req))
		writeResponse(c, http.StatusOK, "application/x-ns-proxy-autoconfig", body, req.Method == http.MethodHead)
		log.Info().Str("path", req.URL.Path).Int("status", http.StatusOK).Msg("pac")
	default:
		body := "This is a SOCKS5 proxy for <device-id>.tunnel names.\n" +
			"Browsers: use the proxy auto-config URL http://" + h.pacAddr(req) + "/proxy.pac\n" +
			"HTTP-only tools: use it as an HTTP proxy (CONNECT or http_proxy) for .tunnel hosts.\n"
		// A HEAD is answered without the body (RFC 9110 §9.3.2): a
		// client would read it as the start of the next response.
		writeResponse(c, http.StatusBadRequest, "text/plain; charset=utf-8", body, req.Method == http.MethodHead)
		log.Info().Str("path", req.URL.Path).Int("status", http.StatusBadRequest).Msg("http request")
	}
}

// authorize applies the door to a CONNECT or a forward: with Auth, its
// Proxy-Authorization; else Admit. A refused client is answered (407, 429,
// 503 or 403) and the refusal was logged by Auth or Admit, throttled.
func (h *HTTPFront) authorize(ctx context.Context, c net.Conn, req *http.Request, deadline time.Time, log zerolog.Logger) (user string, ok bool) {
	if h.Auth == nil {
		if h.Admit == nil {
			return "", true
		}
		if err := h.Admit(c); err != nil {
			writeResponse(c, http.StatusForbidden, "text/plain; charset=utf-8", "Forbidden: this proxy serves its own user only.\n", false)
			return "", false
		}
		return "", true
	}
	user, password, ok := proxyBasicAuth(req)
	if !ok {
		log.Debug().Int("status", http.StatusProxyAuthRequired).Msg("http connect without credentials")
		writeResponse(c, http.StatusProxyAuthRequired, "text/plain; charset=utf-8",
			"Proxy Authentication Required: this proxy needs a username and password.\n", false,
			"Proxy-Authenticate: Basic realm=\""+proxyRealm+"\"")
		return "", false
	}
	// A check waits for a slot until the handshake deadline at most.
	actx, cancel := context.WithDeadline(ctx, deadline)
	err := h.Auth.Check(actx, c.RemoteAddr(), user, password)
	cancel()
	switch {
	case err == nil:
		return user, true
	case errors.Is(err, ErrTooManyAttempts):
		writeResponse(c, http.StatusTooManyRequests, "text/plain; charset=utf-8", err.Error()+"\n", false, "Retry-After: 1")
	case errors.Is(err, ErrAuthBusy):
		writeResponse(c, http.StatusServiceUnavailable, "text/plain; charset=utf-8", err.Error()+"\n", false, "Retry-After: 1")
	default:
		writeResponse(c, http.StatusProxyAuthRequired, "text/plain; charset=utf-8", err.Error()+"\n", false,
			"Proxy-Authenticate: Basic realm=\""+proxyRealm+"\"")
	}
	return "", false
}

// proxyBasicAuth returns the username and password of a request's
// Proxy-Authorization: Basic header (RFC 7617).
func proxyBasicAuth(req *http.Request) (user, password string, ok bool) {
	scheme, cred, found := strings.Cut(req.Header.Get("Proxy-Authorization"), " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
	if err != nil {
		return "", "", false
	}
	return strings.Cut(string(dec), ":")
}

// pacAddr is the SOCKS address as the client reached it.
func (h *HTTPFront) pacAddr(req *http.Request) string {
	if host, port, err := net.SplitHostPort(req.Host); err == nil && host != "" && port != "" &&
		!strings.ContainsAny(req.Host, "\"\\ ;\r\n") {
		return req.Host
	}
	return h.Listen
}

func (h *HTTPFront) connect(ctx context.Context, c net.Conn, br *bufio.Reader, req *http.Request, start time.Time, log zerolog.Logger) {
	host, portText, err := net.SplitHostPort(req.Host)
	port, perr := strconv.ParseUint(portText, 10, 16)
	if err != nil || perr != nil || port == 0 || host == "" {
		writeResponse(c, http.StatusBadRequest, "text/plain; charset=utf-8", "CONNECT needs host:port\n", false)
		log.Info().Str("target", req.Host).Int("status", http.StatusBadRequest).Msg("http connect")
		return
	}
	dt := h.DialTimeout
	if dt <= 0 {
		dt = defaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, dt)
	up, err := h.Dial(dctx, host, uint16(port))
	cancel()
	if err != nil {
		code := ReplyCode(err)
		status := httpStatus(code)
		writeResponse(c, status, "text/plain; charset=utf-8", fmt.Sprintf("%s: %v\n", http.StatusText(status), err), false)
		log.Info().Str("target", req.Host).Int("status", status).Str("reply", fmt.Sprintf("%#02x", code)).Err(err).Msg("http connect")
		return
	}
	if _, err := c.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		up.Abort()
		up.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	// Bytes the client sent right behind its request (a TLS hello) are in
	// the reader's buffer; they go first.
	buffered, _ := br.Peek(br.Buffered())
	conn := drained(c)
	if len(buffered) > 0 {
		conn = &prefixConn{Conn: conn, prefix: append([]byte(nil), buffered...)}
	}
	client := transport.Conn(conn)
	upBytes, downBytes, err := transport.Splice(ctx, client, up)
	ev := log.Info().Str("target", req.Host).Int("status", http.StatusOK)
	if err != nil {
		ev = ev.Str("error", err.Error())
	}
	ev.Int64("up", upBytes).Int64("down", downBytes).Dur("dur", time.Since(start)).Msg("http connect")
}

// lingerClose half-closes c and reads what the client is still sending, up
// to 1 s or 256 KiB, before c is closed: a close with unread data would
// reset the connection and could destroy the answer before the client
// reads it.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.CopyN(io.Discard, c, 256<<10)
}

// httpStatus maps a SOCKS reply code to the HTTP status a CONNECT gets.
func httpStatus(code byte) int {
	switch code {
	case ReplyNotAllowed:
		return http.StatusForbidden
	case ReplyTTLExpired:
		return http.StatusGatewayTimeout
	case ReplyCommandNotSupported, ReplyAddressNotSupported:
		return http.StatusBadRequest
	}
	return http.StatusBadGateway
}

// writeResponse answers status and closes the exchange (Connection:
// close). hdr are extra header lines.
func writeResponse(c net.Conn, status int, ctype, body string, head bool, hdr ...string) {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n",
		status, http.StatusText(status), ctype, len(body))
	for _, h := range hdr {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	if !head {
		b.WriteString(body)
	}
	_, _ = c.Write([]byte(b.String()))
}

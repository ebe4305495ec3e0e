package socks

import (
	"bufio"
	"context"
	"fmt"
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
// .tunnel hosts to this SOCKS server, and HTTP CONNECT for tools that speak
// only HTTP proxies (git, npm, many IDEs). CONNECT uses the same Dial, and
// so the same rules, as SOCKS: it is never an open proxy.
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
}

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
// returns when the connection is finished, having closed c.
func (h *HTTPFront) ServeConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	start := time.Now()
	hs := h.HandshakeTimeout
	if hs <= 0 {
		hs = defaultHandshakeTimeout
	}
	_ = c.SetDeadline(start.Add(hs))
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		h.Log.Debug().Str("client", remote(c)).Err(err).Msg("http request unreadable")
		return
	}
	log := h.Log.With().Str("client", remote(c)).Str("method", req.Method).Logger()
	switch {
	case req.Method == http.MethodConnect:
		h.connect(ctx, c, br, req, start, log)
	case (req.Method == http.MethodGet || req.Method == http.MethodHead) &&
		(req.URL.Path == "/proxy.pac" || req.URL.Path == "/wpad.dat"):
		body := PAC(h.pacAddr(req))
		writeResponse(c, http.StatusOK, "application/x-ns-proxy-autoconfig", body, req.Method == http.MethodHead)
		log.Info().Str("path", req.URL.Path).Int("status", http.StatusOK).Msg("pac")
	default:
		body := "This is a SOCKS5 proxy for <device-id>.tunnel names.\n" +
			"Browsers: use the proxy auto-config URL http://" + h.pacAddr(req) + "/proxy.pac\n" +
			"HTTP-only tools: use it as an HTTP proxy (CONNECT) for .tunnel hosts.\n"
		// A HEAD is answered without the body (RFC 9110 §9.3.2): a
		// client would read it as the start of the next response.
		writeResponse(c, http.StatusBadRequest, "text/plain; charset=utf-8", body, req.Method == http.MethodHead)
		log.Info().Str("path", req.URL.Path).Int("status", http.StatusBadRequest).Msg("http request")
	}
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
	client := transport.Conn(&prefixConn{Conn: c, prefix: append([]byte(nil), buffered...)})
	upBytes, downBytes, err := transport.Splice(ctx, client, up)
	ev := log.Info().Str("target", req.Host).Int("status", http.StatusOK)
	if err != nil {
		ev = ev.Str("error", err.Error())
	}
	ev.Int64("up", upBytes).Int64("down", downBytes).Dur("dur", time.Since(start)).Msg("http connect")
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

func writeResponse(c net.Conn, status int, ctype, body string, head bool) {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n",
		status, http.StatusText(status), ctype, len(body))
	if !head {
		b.WriteString(body)
	}
	_, _ = c.Write([]byte(b.String()))
}

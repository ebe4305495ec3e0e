package socks

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/transport"
)

// The plain forward proxy: what tools configured with http_proxy send
// (wget, apt, pip, curl -x for http:// URLs) is a request in absolute form,
// `GET http://<id>.tunnel/path HTTP/1.1`, not a CONNECT. The front serves
// it through the same Dial as a CONNECT, after the same door, so it is no
// more an open proxy than CONNECT is: the Dial decides which hosts are
// served.
//
// One request per connection: each request gets its own stream to the
// device, and the client is told Connection: close. Keeping the client's
// connection alive would save it a loopback TCP handshake per request and
// nothing more (the end-to-end QUIC connection is the dialer's and is
// reused either way), at the price of re-checking the door and re-dialing
// whenever the host changes between requests on one connection. The
// device's server is told Connection: close too, so that a response
// without a length ends where the stream does.
//
// The request goes to the device in origin form (RFC 9112 §3.2.1) with the
// Host the client's target named (§3.2.2), without hop-by-hop headers
// (RFC 9110 §7.6.1: Connection and what it names, Keep-Alive, TE, Trailer,
// Transfer-Encoding, Upgrade) nor Proxy-Authorization and
// Proxy-Connection, which were for this proxy. Bodies are forwarded as
// they arrive, re-chunked if they came chunked (trailers are dropped). The
// response comes back the same way, its body as it arrives and
// close-delimited when the device chunked it.

// maxResponseHeader bounds a device's status line and headers. The device
// is reached only after the door, but a stream must not make this process
// allocate without limit.
const maxResponseHeader = 1 << 20

// maxInterim bounds the 1xx responses relayed before the final one.
const maxInterim = 8

// hopByHop are the headers that concern one connection only (RFC 9110
// §7.6.1), and the proxy's own.
var hopByHop = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "TE", "Trailer", "Transfer-Encoding", "Upgrade"}

// errForwardBody: reading the client's request body failed (a malformed
// chunk, a client gone), not the device.
var errForwardBody = errors.New("reading the request body")

// isForward reports whether req is a request in absolute form for the
// forward proxy (anything but CONNECT with a scheme in its target).
func isForward(req *http.Request) bool {
	return req.Method != http.MethodConnect && req.URL != nil && req.URL.Scheme != ""
}

// forward serves one absolute-form request, the door already passed. lr is
// the header cap under br; the body is read past it.
func (h *HTTPFront) forward(ctx context.Context, c net.Conn, lr *io.LimitedReader, br *bufio.Reader, req *http.Request, start time.Time, log zerolog.Logger) {
	log = log.With().Str("target", req.URL.Host).Logger()
	host, port, err := forwardTarget(req)
	if err != nil {
		writeResponse(c, http.StatusBadRequest, "text/plain; charset=utf-8", err.Error()+"\n", req.Method == http.MethodHead)
		log.Info().Int("status", http.StatusBadRequest).Err(err).Msg("http forward")
		lingerClose(c)
		return
	}
	dt := h.DialTimeout
	if dt <= 0 {
		dt = defaultDialTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, dt)
	up, err := h.Dial(dctx, host, port)
	cancel()
	if err == nil && up == nil {
		err = errors.New("socks: Dial returned neither a connection nor an error")
	}
	if err != nil {
		code := ReplyCode(err)
		status := httpStatus(code)
		writeResponse(c, status, "text/plain; charset=utf-8", fmt.Sprintf("%s: %v\n", http.StatusText(status), err), req.Method == http.MethodHead)
		log.Info().Int("status", status).Str("reply", fmt.Sprintf("%#02x", code)).Err(err).Msg("http forward")
		lingerClose(c)
		return
	}
	defer up.Close()
	// The body may take as long as the client likes, and the response as
	// long as the device does; ending ctx still stops both.
	lr.N = math.MaxInt64
	_ = c.SetDeadline(time.Time{})
	stop := afterFunc(ctx, func() {
		_ = c.SetDeadline(time.Unix(1, 0))
		up.Abort()
	})
	defer stop()

	status, upBytes, downBytes, cut, err := h.exchange(c, up, req)
	ev := log.Info().Int("status", status)
	if err != nil {
		ev = ev.Str("error", err.Error())
	}
	ev.Int64("up", upBytes).Int64("down", downBytes).Dur("dur", time.Since(start)).Msg("http forward")
	if cut {
		// The client must not take a cut-off body for a whole one.
		transport.Conn(c).Abort()
		return
	}
	lingerClose(c)
}

// forwardTarget is the host and port an absolute-form request names.
func forwardTarget(req *http.Request) (string, uint16, error) {
	if !strings.EqualFold(req.URL.Scheme, "http") {
		return "", 0, fmt.Errorf("only http:// URLs are forwarded; for %s:// use CONNECT (an HTTPS proxy setting)", req.URL.Scheme)
	}
	host := req.URL.Hostname()
	if host == "" {
		return "", 0, errors.New("the URL names no host")
	}
	port := uint64(80)
	if p := req.URL.Port(); p != "" {
		var err error
		if port, err = strconv.ParseUint(p, 10, 16); err != nil || port == 0 {
			return "", 0, fmt.Errorf("bad port %q in the URL", p)
		}
	}
	return host, uint16(port), nil
}

// exchange sends req to up and relays the response to c. status is what
// the client was answered; err says why the exchange did not end cleanly.
// cut is set when a response was begun and not finished: c must then be
// aborted, not closed.
func (h *HTTPFront) exchange(c net.Conn, up transport.HalfConn, req *http.Request) (status int, upBytes, downBytes int64, cut bool, err error) {
	chunked := len(req.TransferEncoding) > 0 && req.TransferEncoding[0] == "chunked"
	if _, err := up.Write(requestHead(req, chunked)); err != nil {
		writeResponse(c, http.StatusBadGateway, "text/plain; charset=utf-8", "Bad Gateway: the device's stream failed\n", req.Method == http.MethodHead)
		return http.StatusBadGateway, 0, 0, false, fmt.Errorf("writing the request to the device: %w", err)
	}
	// The body goes up while the response may already come down (a
	// device may answer 100 Continue, or refuse early).
	bodyDone := make(chan error, 1)
	var sent countingWriter
	go func() {
		sent.w = up
		err := sendBody(&sent, req.Body, chunked)
		if err != nil {
			up.Abort() // the device must not take a cut-off body for a whole one
		}
		bodyDone <- err
	}()
	defer func() {
		select {
		case berr := <-bodyDone:
			if berr != nil && err == nil {
				err = berr
			}
		default:
			// The device answered before the body ended: stop reading it.
			_ = c.SetReadDeadline(time.Unix(1, 0))
			up.Abort()
			<-bodyDone
		}
		upBytes = sent.n
	}()

	lim := &io.LimitedReader{R: up, N: maxResponseHeader}
	ubr := bufio.NewReader(lim)
	var resp *http.Response
	for interim := 0; ; interim++ {
		resp, err = http.ReadResponse(ubr, req)
		if err != nil {
			select {
			case berr := <-bodyDone:
				// Put it back for the deferred wait.
				bodyDone <- berr
				if berr != nil {
					writeResponse(c, http.StatusBadRequest, "text/plain; charset=utf-8", "Bad Request: "+berr.Error()+"\n", req.Method == http.MethodHead)
					return http.StatusBadRequest, 0, 0, false, berr
				}
			default:
			}
			if lim.N == 0 {
				err = fmt.Errorf("the device's response headers exceed %d KiB", maxResponseHeader>>10)
			}
			writeResponse(c, http.StatusBadGateway, "text/plain; charset=utf-8", "Bad Gateway: no valid response from the device\n", req.Method == http.MethodHead)
			return http.StatusBadGateway, 0, 0, false, fmt.Errorf("reading the device's response: %w", err)
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if interim == maxInterim {
			writeResponse(c, http.StatusBadGateway, "text/plain; charset=utf-8", "Bad Gateway: too many interim responses\n", req.Method == http.MethodHead)
			return http.StatusBadGateway, 0, 0, false, fmt.Errorf("the device sent more than %d interim responses", maxInterim)
		}
		if _, err := c.Write(responseHead(resp)); err != nil {
			return resp.StatusCode, 0, 0, true, fmt.Errorf("writing to the client: %w", err)
		}
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// Upgrade was not forwarded, so no device should switch.
		writeResponse(c, http.StatusBadGateway, "text/plain; charset=utf-8", "Bad Gateway: the device switched protocols unasked\n", req.Method == http.MethodHead)
		return http.StatusBadGateway, 0, 0, false, errors.New("the device answered 101 to a request without Upgrade")
	}
	lim.N = math.MaxInt64
	if _, err := c.Write(responseHead(resp)); err != nil {
		return resp.StatusCode, 0, 0, true, fmt.Errorf("writing to the client: %w", err)
	}
	downBytes, err = io.Copy(c, resp.Body)
	if err != nil {
		return resp.StatusCode, 0, downBytes, true, fmt.Errorf("relaying the response body: %w", err)
	}
	return resp.StatusCode, 0, downBytes, false, nil
}

// requestHead is req's request line and headers in origin form, for the
// device.
func requestHead(req *http.Request, chunked bool) []byte {
	hdr := req.Header.Clone()
	removeHopByHop(hdr)
	hadLength := hdr.Get("Content-Length") != ""
	hdr.Del("Content-Length")
	hdr.Del("Host")
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), req.Host)
	_ = hdr.Write(&b)
	switch {
	case chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case req.ContentLength > 0 || hadLength:
		fmt.Fprintf(&b, "Content-Length: %d\r\n", max(req.ContentLength, 0))
	}
	b.WriteString("Connection: close\r\n\r\n")
	return b.Bytes()
}

// responseHead is resp's status line and headers for the client. A body
// whose length the device gave keeps it; any other ends with the
// connection.
func responseHead(resp *http.Response) []byte {
	hdr := resp.Header.Clone()
	removeHopByHop(hdr)
	text := strings.TrimSpace(strings.TrimPrefix(resp.Status, strconv.Itoa(resp.StatusCode)))
	if text == "" {
		text = http.StatusText(resp.StatusCode)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "HTTP/1.1 %03d %s\r\n", resp.StatusCode, text)
	_ = hdr.Write(&b)
	if resp.StatusCode >= 200 {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// removeHopByHop deletes from h the headers of one connection: those
// hopByHop lists and those its Connection header names.
func removeHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for tok := range strings.SplitSeq(v, ",") {
			if t := textproto.TrimString(tok); t != "" {
				h.Del(t)
			}
		}
	}
	for _, k := range hopByHop {
		h.Del(k)
	}
}

// sendBody copies a request body to w as it arrives, chunked again if it
// came chunked.
func sendBody(w io.Writer, body io.Reader, chunked bool) error {
	if body == nil || body == http.NoBody {
		return nil
	}
	dst := w
	var cw io.WriteCloser
	if chunked {
		cw = httputil.NewChunkedWriter(w)
		dst = cw
	}
	buf := make([]byte, 32<<10)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				return fmt.Errorf("forwarding the request body: %w", err)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("%w: %w", errForwardBody, rerr)
		}
	}
	if cw != nil {
		// The last chunk, and no trailers.
		if err := cw.Close(); err != nil {
			return fmt.Errorf("forwarding the request body: %w", err)
		}
		if _, err := io.WriteString(w, "\r\n"); err != nil {
			return fmt.Errorf("forwarding the request body: %w", err)
		}
	}
	return nil
}

// countingWriter counts what reaches w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

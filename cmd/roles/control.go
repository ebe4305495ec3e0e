package roles

// The control socket. A running socksd, publish or gateway listens on a
// Unix socket in its home, ROLE.sock; the home is created 0700 and the
// socket chmod 0600, so only the owner (and root) can connect (on Windows,
// the home's ACL decides: controlsock_windows.go). It is how
// `tunnel status` reads a daemon, and how one-shot commands (connect,
// bind, known-hosts, ping) reach devices through this home's running
// socksd, with its node, connections and relay session, instead of
// starting a node of their own.
//
//	Request, client → daemon: one line of at most maxControlLine bytes,
//	ending in '\n', within statusTimeout of connecting; fields separated
//	by one space:
//	  status                 every role
//	  dial HOST PORT         socksd only
//	  hostkeys HOST PORT     socksd only
//	  ping HOST              socksd only
//
//	Reply, daemon → client:
//	  status: one JSON Status document, then the daemon closes.
//	  dial:   one JSON line, controlReply; if its error is empty, the
//	          stream to HOST:PORT follows, both ways, with half-closes
//	          passed on, until either side closes.
//	  hostkeys: one JSON line, controlReply, its keys the SSH host keys
//	          of HOST:PORT in wire format (base64 in JSON); then close.
//	  ping:   one JSON line, controlReply, its pong the answer; then close.
//	  a request the role does not answer, or one that does not parse:
//	          a controlReply with the error, then close.
//
// Nothing here is reachable by a stranger; the cap on connections at once
// (maxControlConns) only keeps a runaway local script from exhausting the
// daemon.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// Limits and timings of the control socket.
const (
	// maxControlLine bounds a request line.
	maxControlLine = 1024
	// maxControlConns bounds the control connections served at once; more
	// are closed at once.
	maxControlConns = 256
	// controlDialTimeout bounds a dial request, as socksd bounds a SOCKS
	// CONNECT's.
	controlDialTimeout = 30 * time.Second
	// statusTimeout bounds one status exchange, on either side, and the
	// wait for a request line.
	statusTimeout = 5 * time.Second
	// statusProbe bounds the check for another process answering on the
	// socket (a live one answers at once).
	statusProbe = 200 * time.Millisecond
	// statusDial bounds connecting to a role's socket.
	statusDial = 2 * time.Second
)

// controlReply is the JSON line that answers a request other than status.
type controlReply struct {
	// Error is what went wrong, in words for the user; empty on success.
	Error string `json:"error,omitempty"`
	// Keys answers hostkeys, Pong ping.
	Keys [][]byte     `json:"keys,omitempty"`
	Pong *dialer.Pong `json:"pong,omitempty"`
}

// controlServer answers one role's control socket.
type controlServer struct {
	role string
	n    *Node
	log  zerolog.Logger
	// dials: whether dial requests are served (socksd only: it is the
	// client that one-shot commands borrow).
	dials bool
}

// serveControl answers control requests for n until ctx ends or stop is
// called. A socket that cannot be made is logged, not fatal: the socket is
// a window and a convenience, not the service.
func serveControl(ctx context.Context, home, role string, n *Node, log zerolog.Logger) (stop func()) {
	path := StatusPath(home, role)
	if err := checkSocketPath(runtime.GOOS, path); err != nil {
		log.Warn().Err(err).Msg("no status socket")
		return func() {}
	}
	if c, err := net.DialTimeout("unix", path, statusProbe); err == nil {
		c.Close()
		log.Warn().Str("socket", path).Msg("another " + role + " with this home answers status; this one will not")
		return func() {}
	}
	_ = os.Remove(path) // a stale socket of a process that died
	ln, err := net.Listen("unix", path)
	if err != nil {
		log.Warn().Err(err).Msg("no status socket")
		return func() {}
	}
	if err := restrictSocket(path); err != nil {
		ln.Close()
		log.Warn().Err(err).Msg("no status socket")
		return func() {}
	}
	s := &controlServer{role: role, n: n, log: log, dials: role == "socksd"}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
	})
	wg.Go(func() {
		slots := make(chan struct{}, maxControlConns)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case slots <- struct{}{}:
			default:
				c.Close()
				continue
			}
			wg.Go(func() {
				defer func() { <-slots }()
				s.serve(ctx, c)
			})
		}
	})
	return func() {
		cancel()
		wg.Wait()
		os.Remove(path)
	}
}

func (s *controlServer) serve(ctx context.Context, c net.Conn) {
	defer c.Close()
	// Stopping the daemon ends every control connection, whatever it is
	// waiting for.
	defer context.AfterFunc(ctx, func() { c.Close() })()
	_ = c.SetDeadline(time.Now().Add(statusTimeout))
	line, err := readLine(c)
	if err != nil {
		s.reply(c, fmt.Errorf("read request: %w", err))
		return
	}
	f := strings.Split(line, " ")
	switch {
	case f[0] == "status" && len(f) == 1:
		_ = json.NewEncoder(c).Encode(StatusOf(s.role, s.n))
	case f[0] == "dial" && len(f) == 3 && s.dials:
		port, err := strconv.ParseUint(f[2], 10, 16)
		if err != nil || port == 0 {
			s.reply(c, fmt.Errorf("dial: port %q: want 1 to 65535", f[2]))
			return
		}
		s.dial(ctx, c, f[1], uint16(port))
	case f[0] == "hostkeys" && len(f) == 3 && s.dials:
		port, err := strconv.ParseUint(f[2], 10, 16)
		if err != nil || port == 0 {
			s.reply(c, fmt.Errorf("hostkeys: port %q: want 1 to 65535", f[2]))
			return
		}
		s.hostKeys(ctx, c, f[1], uint16(port))
	case f[0] == "ping" && len(f) == 2 && s.dials:
		s.ping(ctx, c, f[1])
	default:
		s.reply(c, fmt.Errorf("%s does not answer %q", s.role, trunc(line)))
	}
}

func (s *controlServer) dial(ctx context.Context, c net.Conn, host string, port uint16) {
	// A refusal that took the whole dial still reaches the client.
	_ = c.SetDeadline(time.Now().Add(controlDialTimeout + statusTimeout))
	dctx, cancel := context.WithTimeout(ctx, controlDialTimeout)
	st, err := s.n.Dialer.Dial(dctx, host, port)
	cancel()
	if err != nil {
		s.reply(c, dialError(host, port, err))
		return
	}
	_ = c.SetDeadline(time.Now().Add(statusTimeout))
	if !s.reply(c, nil) {
		st.Abort()
		st.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	up, down, err := transport.Splice(ctx, transport.Conn(c), st)
	ev := s.log.Debug()
	if err != nil {
		ev = ev.Err(err)
	}
	ev.Str("host", host).Uint16("port", port).Int64("up", up).Int64("down", down).Msg("control dial")
}

// reply writes err (nil: success) as a controlReply; false if it could not.
func (s *controlServer) reply(c net.Conn, err error) bool {
	var r controlReply
	if err != nil {
		r.Error = err.Error()
	}
	return json.NewEncoder(c).Encode(r) == nil
}

// dialError is a failed dial of host:port in words: what its outcome
// means (dialer.Outcome, said once), then the details.
func dialError(host string, port uint16, err error) error {
	if why := dialer.Classify(err).Explain(); !strings.HasPrefix(err.Error(), why) {
		err = fmt.Errorf("%s: %w", why, err)
	}
	return fmt.Errorf("connect to %s:%d: %w", host, port, err)
}

// readLine reads one request or reply line, byte by byte so that nothing
// after it is consumed: the stream that follows a dial reply is the
// caller's. It refuses a line longer than maxControlLine.
func readLine(r io.Reader) (string, error) {
	var b []byte
	var one [1]byte
	for len(b) <= maxControlLine {
		if _, err := io.ReadFull(r, one[:]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", fmt.Errorf("line longer than %d bytes", maxControlLine)
}

// trunc shortens what a client sent, for an error that echoes it.
func trunc(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// controlRequest connects to the control socket at path and sends one
// request line, within ctx. The caller reads the reply.
func controlRequest(ctx context.Context, path, line string) (net.Conn, error) {
	if strings.ContainsAny(line, "\n\r") || len(line) > maxControlLine {
		return nil, fmt.Errorf("bad control request %q", trunc(line))
	}
	dctx, cancel := context.WithTimeout(ctx, statusDial)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "unix", path)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	} else {
		_ = c.SetDeadline(time.Now().Add(controlDialTimeout + statusTimeout))
	}
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// readReply reads a controlReply line and returns its error, if any.
func readReply(c net.Conn) error {
	line, err := readLine(c)
	if err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	var r controlReply
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return fmt.Errorf("read reply: %w", err)
	}
	if r.Error != "" {
		return errors.New(r.Error)
	}
	return nil
}

// controlDial opens a stream to host:port through the socksd whose
// control socket is at path.
func controlDial(ctx context.Context, path, host string, port uint16) (transport.HalfConn, error) {
	if host == "" || strings.ContainsAny(host, " \t\r\n") {
		return nil, fmt.Errorf("host %q: not a host name", trunc(host))
	}
	c, err := controlRequest(ctx, path, fmt.Sprintf("dial %s %d", host, port))
	if err != nil {
		return nil, fmt.Errorf("ask socksd: %w", err)
	}
	if err := readReply(c); err != nil {
		c.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
			err = fmt.Errorf("connect to %s:%d: %w", host, port, ctx.Err())
		}
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return transport.Conn(c), nil
}

package resolver

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// RelayAddr is where a rendezvous node is: "host:port", optionally with
// the node's ID in front ("ID@host:port"), in which case a node proving any
// other key is refused.
type RelayAddr struct {
	ID       identity.ID // zero: not checked
	HostPort string
}

func (a RelayAddr) String() string {
	if a.ID.IsZero() {
		return a.HostPort
	}
	return a.ID.String() + "@" + a.HostPort
}

// ParseRelayAddr parses "host:port" or "ID@host:port".
func ParseRelayAddr(s string) (RelayAddr, error) {
	var a RelayAddr
	hp := s
	if i := strings.LastIndexByte(s, '@'); i >= 0 {
		id, err := identity.ParseID(s[:i])
		if err != nil {
			return a, fmt.Errorf("relay address %q: %w", s, err)
		}
		a.ID, hp = id, s[i+1:]
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return a, fmt.Errorf("relay address %q: want host:port or ID@host:port: %w", s, err)
	}
	if host == "" {
		return a, fmt.Errorf("relay address %q: empty host", s)
	}
	if _, err := net.LookupPort("udp", port); err != nil || port == "0" {
		return a, fmt.Errorf("relay address %q: bad port %q", s, port)
	}
	a.HostPort = hp
	return a, nil
}

// Client keeps a node registered at its rendezvous node and looks devices
// up there. Run owns the connection: it dials, registers, and redials with
// backoff and jitter whenever the connection ends, until its context ends.
type Client struct {
	Node      *transport.Node
	Relay     RelayAddr
	Publishes bool // register as a device others may look up
	Log       zerolog.Logger
	// OnRegistered, if set, is called after each successful registration
	// with the node's address as the relay sees it.
	OnRegistered func(observed string)

	mu    sync.Mutex
	conn  *quic.Conn
	ready chan struct{} // closed while conn is registered
}

// lookupWait bounds how long a lookup waits for a relay connection that is
// down, so that a dead relay gives a fast, clear error.
const lookupWait = 3 * time.Second

// pingTimeout is how long a relay may take to answer a ping.
const pingTimeout = 5 * time.Second

func (c *Client) readyChan() chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ready == nil {
		c.ready = make(chan struct{})
	}
	return c.ready
}

// Run connects and stays connected until ctx ends; it returns nil then.
func (c *Client) Run(ctx context.Context) error {
	c.readyChan()

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	bo.RandomizationFactor = 0.5
	var lastErr string
	for ctx.Err() == nil {
		start := time.Now()
		err := c.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if time.Since(start) > 30*time.Second {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		// One line per distinct failure: a relay that stays down does not
		// fill the log.
		if msg := err.Error(); msg != lastErr {
			c.Log.Warn().Err(err).Str("relay", c.Relay.String()).Dur("retry_in", wait).Msg("relay connection lost")
			lastErr = msg
		} else {
			c.Log.Debug().Err(err).Dur("retry_in", wait).Msg("relay still unreachable")
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
	return nil
}

// session dials, registers, and waits for the connection to end.
func (c *Client) session(ctx context.Context) error {
	ua, err := net.ResolveUDPAddr("udp", c.Relay.HostPort)
	if err != nil {
		return fmt.Errorf("resolve relay %s: %w", c.Relay.HostPort, err)
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	c.Node.SetRelay(ap)
	dctx, cancel := context.WithTimeout(ctx, transport.HandshakeTimeout+time.Second)
	conn, err := c.Node.DialRelay(dctx, ap, c.Relay.ID)
	cancel()
	if err != nil {
		return fmt.Errorf("connect to relay %s: %w", c.Relay, err)
	}
	defer conn.CloseWithError(0, "")
	flags := byte(0)
	if c.Publishes {
		flags |= flagPublishes
	}
	body := binary.BigEndian.AppendUint64(nil, uint64(c.Node.Endpoint()))
	body = append(body, flags)
	rctx, cancel := context.WithTimeout(ctx, requestTimeout)
	status, reply, err := request(rctx, conn, reqRegister, body)
	cancel()
	if err != nil {
		return fmt.Errorf("register at relay %s: %w", c.Relay, err)
	}
	if status != statusOK {
		return fmt.Errorf("register at relay %s: %s", c.Relay, statusText(status))
	}
	c.mu.Lock()
	c.conn = conn
	close(c.ready)
	c.mu.Unlock()
	if ap, err := netip.ParseAddrPort(string(reply)); err == nil {
		c.Node.SetObserved(ap)
	}
	c.Log.Info().Str("relay", c.Relay.String()).Str("observed", string(reply)).
		Str("endpoint", c.Node.Endpoint().String()).Msg("registered with relay")
	if c.OnRegistered != nil {
		c.OnRegistered(string(reply))
	}
	c.heartbeat(ctx, conn)
	c.mu.Lock()
	c.conn = nil
	c.ready = make(chan struct{})
	c.mu.Unlock()
	if err := context.Cause(conn.Context()); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// heartbeat pings the relay until the connection or ctx ends, and ends
// the connection when a ping goes unanswered.
func (c *Client) heartbeat(ctx context.Context, conn *quic.Conn) {
	t := time.NewTicker(transport.RelayPing)
	defer t.Stop()
	body := make([]byte, 32)
	for {
		select {
		case <-conn.Context().Done():
			return
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		status, _, err := request(pctx, conn, reqPing, body)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil || status != statusOK {
			conn.CloseWithError(0, "ping unanswered")
			c.Log.Debug().Err(err).Msg("relay did not answer a ping")
			<-conn.Context().Done()
			return
		}
	}
}

// current returns the registered connection, waiting up to lookupWait.
func (c *Client) current(ctx context.Context) (*quic.Conn, error) {
	for {
		ready := c.readyChan()
		select {
		case <-ready:
			c.mu.Lock()
			conn := c.conn
			c.mu.Unlock()
			if conn != nil {
				return conn, nil
			}
		default:
			t := time.NewTimer(lookupWait)
			select {
			case <-ready:
				t.Stop()
				continue
			case <-t.C:
				return nil, fmt.Errorf("%w: no connection to %s", ErrRegistryUnavailable, c.Relay)
			case <-ctx.Done():
				t.Stop()
				return nil, fmt.Errorf("%w: %w", ErrRegistryUnavailable, ctx.Err())
			}
		}
	}
}

// Lookup asks the rendezvous node where device id is. It returns an error
// wrapping ErrOffline for a device that is not online, and one wrapping
// ErrRegistryUnavailable when no relay could be asked.
func (c *Client) Lookup(ctx context.Context, id identity.ID) (transport.Endpoint, error) {
	conn, err := c.current(ctx)
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w", id.Short(), err)
	}
	status, reply, err := request(ctx, conn, reqLookup, id[:])
	if err != nil {
		return 0, fmt.Errorf("look up %s: %w: %w", id.Short(), ErrRegistryUnavailable, err)
	}
	switch status {
	case statusOK:
		if len(reply) != 8 {
			return 0, fmt.Errorf("look up %s: %w", id.Short(), errMalformed)
		}
		return transport.Endpoint(binary.BigEndian.Uint64(reply)), nil
	case statusNotFound:
		return 0, fmt.Errorf("look up %s: %w", id.Short(), ErrOffline)
	}
	return 0, fmt.Errorf("look up %s: relay answered %s", id.Short(), statusText(status))
}

func request(ctx context.Context, conn *quic.Conn, typ byte, body []byte) (byte, []byte, error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return 0, nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(d)
	} else {
		_ = str.SetDeadline(time.Now().Add(requestTimeout))
	}
	stop := context.AfterFunc(ctx, func() { str.CancelRead(1); str.CancelWrite(1) })
	defer stop()
	if err := writeMsg(str, typ, body); err != nil {
		return 0, nil, err
	}
	str.Close()
	status, reply, err := readMsg(str)
	if err != nil {
		if ctx.Err() != nil {
			return 0, nil, ctx.Err()
		}
		return 0, nil, err
	}
	// Drain to EOF so the stream completes.
	_, _ = io.Copy(io.Discard, io.LimitReader(str, 1))
	return status, reply, nil
}

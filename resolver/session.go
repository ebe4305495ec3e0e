package resolver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver/internal/wire"
	"github.com/tunnel-dev/tunnel/transport"
)

// One session: an outer connection to a rendezvous node on which the node
// registered its Endpoint. The home session (client.go) and the sessions
// to devices' home nodes (dial.go) are both made of these steps.

// resolveRelay turns a relay's HOST:PORT into the address frames go to.
func resolveRelay(ra RelayAddr) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", ra.HostPort)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolve relay %s: %w", ra.HostPort, err)
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// dialRelay resolves ra and opens the outer connection to it.
func dialRelay(ctx context.Context, node *transport.Node, ra RelayAddr) (netip.AddrPort, *quic.Conn, error) {
	ap, err := resolveRelay(ra)
	if err != nil {
		return ap, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, dialRelayTimeout)
	defer cancel()
	conn, err := node.DialRelay(dctx, ap, ra.ID)
	if err != nil {
		return ap, nil, fmt.Errorf("connect to relay %s: %w", ra, err)
	}
	return ap, conn, nil
}

// registered is what a registration gave: the address the relay saw the
// node at, and the lease, if the node asked for one and the relay granted
// it (nil otherwise).
type registered struct {
	observed netip.AddrPort
	lease    *transport.Lease
	ttl      time.Duration
}

// register registers node's Endpoint on conn, asking for a lease if
// lease is set.
func register(ctx context.Context, conn *quic.Conn, node *transport.Node, publishes, lease bool) (registered, error) {
	rctx, cancel := context.WithTimeout(ctx, wire.RequestTimeout)
	defer cancel()
	req := wire.Register{Endpoint: node.Endpoint(), Nonce: node.EndpointNonce(), Publishes: publishes, Lease: lease}
	status, reply, err := request(rctx, conn, wire.ReqRegister, req.Body())
	if err != nil {
		return registered{}, err
	}
	if status != wire.StatusOK {
		return registered{}, errors.New(wire.StatusText(status))
	}
	observed, g, err := wire.ParseRegistered(reply)
	if err != nil {
		return registered{}, err
	}
	reg := registered{observed: observed}
	if g != nil && lease {
		reg.lease = &transport.Lease{Endpoint: req.Endpoint, ID: node.Key().ID(), Device: publishes, Expires: g.Expires, Key: g.Key}
		reg.ttl = g.TTL
	}
	return reg, nil
}

// heartbeat pings the relay until the connection or ctx ends, and ends
// the connection when a ping goes unanswered. A time jump (jumped's
// channel closes) pings at once, with a short timeout: after a freeze or
// a sleep the relay has likely dropped the session, and the node should
// register again now rather than at the next failed ping.
func heartbeat(ctx context.Context, conn *quic.Conn, log zerolog.Logger, jumped func() <-chan struct{}) {
	t := time.NewTicker(transport.RelayPing)
	defer t.Stop()
	body := make([]byte, wire.PingLen)
	for {
		timeout := pingTimeout
		select {
		case <-conn.Context().Done():
			return
		case <-ctx.Done():
			return
		case <-t.C:
		case <-jumped():
			timeout = jumpPingTimeout
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		status, _, err := request(pctx, conn, wire.ReqPing, body)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil || status != wire.StatusOK {
			conn.CloseWithError(0, "ping unanswered")
			log.Debug().Err(err).Msg("relay did not answer a ping")
			<-conn.Context().Done()
			return
		}
	}
}

// request sends one registry request on its own stream and reads the
// response.
func request(ctx context.Context, conn *quic.Conn, typ byte, body []byte) (byte, []byte, error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return 0, nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = str.SetDeadline(d)
	} else {
		_ = str.SetDeadline(time.Now().Add(wire.RequestTimeout))
	}
	stop := context.AfterFunc(ctx, func() { str.CancelRead(1); str.CancelWrite(1) })
	defer stop()
	if err := wire.WriteMsg(str, typ, body); err != nil {
		return 0, nil, err
	}
	str.Close()
	status, reply, err := wire.ReadMsg(str)
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

package dialer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/transport/stream"
)

// Requests that ask a device something instead of carrying a connection:
// they share the device connection with the streams (so a ping measures
// the path the streams take), one stream each.

// Pong is one answered ping.
type Pong struct {
	// RTT is the round trip of the ping stream, from its opening to the
	// device's answer.
	RTT time.Duration
	// Path is "direct" or "relayed", and Via the device's address on the
	// direct path, or the rendezvous node's that relays it.
	Path string
	Via  string
}

// Ping asks the device named host for an answer, on the connection
// streams to it use (dialing it if there is none).
func (d *Dialer) Ping(ctx context.Context, host string) (Pong, error) {
	var p Pong
	err := d.query(ctx, host, "ping", func(ctx context.Context, pc *peerConn) error {
		start := time.Now()
		if err := stream.Ping(ctx, pc.conn); err != nil {
			return err
		}
		p.RTT = time.Since(start)
		p.Path, p.Via = "relayed", "?"
		if info, ok := d.res.Node().PeerInfo(pc.conn); ok {
			if info.Direct.IsValid() {
				p.Path, p.Via = "direct", info.Direct.String()
			} else if !info.Relay.IsZero() {
				p.Via = info.Relay.Addr.String()
			}
		}
		return nil
	})
	return p, err
}

// HostKeys asks the device named host for the SSH host keys of the
// service behind port, as the device sees them when it asks that service
// itself. Errors wrap the sentinels Classify knows, stream.ErrNotSSH and
// stream.ErrDeviceTooOld among them.
func (d *Dialer) HostKeys(ctx context.Context, host string, port uint16) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	err := d.query(ctx, host, fmt.Sprintf("host keys of port %d", port), func(ctx context.Context, pc *peerConn) error {
		req := d.request(pc, port)
		wire, guard, err := stream.HostKeys(ctx, pc.conn, req)
		d.learn(pc, req, guard)
		if err != nil {
			return err
		}
		keys = keys[:0]
		for i, b := range wire {
			k, err := ssh.ParsePublicKey(b)
			if err != nil {
				return fmt.Errorf("%w: key %d: %w", stream.ErrMalformedHostKeys, i+1, err)
			}
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return keys, nil
}

// query runs ask on a live connection to the device named host, as
// DialDevice opens a stream: watched for a stale connection (stale.go),
// and once more on a fresh connection if the one it used had died.
func (d *Dialer) query(ctx context.Context, host, what string, ask func(context.Context, *peerConn) error) error {
	id, isTunnel, err := d.Device(host)
	if err != nil {
		return err
	}
	if !isTunnel {
		return fmt.Errorf("%w: %s", ErrNotTunnel, host)
	}
	for attempt := 0; ; attempt++ {
		pc, err := d.acquire(ctx, id)
		if err != nil {
			return fmt.Errorf("%s of %s: %w", what, id.Short(), err)
		}
		node := d.res.Node()
		node.CountStreams(pc.conn, 1)
		err = d.watched(ctx, pc, func(ctx context.Context) error { return ask(ctx, pc) })
		node.CountStreams(pc.conn, -1)
		d.release(pc)
		if err == nil {
			return nil
		}
		if attempt == 0 && ctx.Err() == nil && (pc.conn.Context().Err() != nil || errors.Is(err, errPeerSilent)) {
			if !errors.Is(err, errPeerSilent) {
				d.forget(pc) // a retired one keeps its established streams
			}
			continue
		}
		return fmt.Errorf("%s of %s: %w", what, id.Short(), err)
	}
}

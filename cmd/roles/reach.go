package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strings"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/transport"
)

// ErrNoWay is returned by Reach when there is no socksd running with the
// home and no rendezvous node was given: the user has to say how.
var ErrNoWay = errors.New("no way to reach devices")

// Reacher is how a one-shot command (connect, bind, known-hosts, ping)
// reaches devices: through this home's running socksd, over its control
// socket; through a SOCKS5 server (connect only); or through a node of its
// own whose key is the home's.
type Reacher struct {
	cfg  ConnectConfig
	sock string // control socket of the running socksd, or ""
	node *Node  // the node of its own, or nil
}

// Reach decides how to reach devices for cfg: a SOCKS5 server if
// cfg.SOCKS is set; else this home's running socksd if cfg.PreferSocksd
// and one answers; else a node of its own with cfg.Relays; else ErrNoWay,
// with words that say what to do.
func Reach(ctx context.Context, cfg ConnectConfig) (*Reacher, error) {
	r := &Reacher{cfg: cfg}
	if cfg.SOCKS != "" {
		return r, nil
	}
	if cfg.PreferSocksd {
		path := StatusPath(cfg.Home, "socksd")
		if err := checkSocketPath(runtime.GOOS, path); err != nil {
			// No socksd can listen there either; a node of its own still
			// can, if there is a rendezvous node to give it.
			if len(cfg.Relays) == 0 {
				return nil, fmt.Errorf("ask the socksd of home %s: %w", cfg.Home, err)
			}
		} else if c, err := net.DialTimeout("unix", path, statusDial); err == nil {
			c.Close()
			r.sock = path
			return r, nil
		} else if !noDaemon(path, err) {
			return nil, fmt.Errorf("ask the socksd of home %s: %w", cfg.Home, err)
		}
	}
	if len(cfg.Relays) == 0 {
		return nil, fmt.Errorf("%w: no socksd is running with home %s, and no rendezvous node was given: "+
			"start one ('tunnel socksd', or 'make run'), or give --relay HOST:PORT or TUNNEL_RELAY", ErrNoWay, cfg.Home)
	}
	key, err := identity.LoadOrCreate(cfg.Home)
	if err != nil {
		return nil, err
	}
	// The node outlives ctx, which bounds connecting only.
	n, err := StartNode(context.WithoutCancel(ctx), NodeConfig{Key: key, Relays: cfg.Relays, Path: cfg.Path,
		Credentials: HomeCredentials(cfg.Home), Names: HomeNames(cfg.Home, cfg.Log), Log: cfg.Log})
	if err != nil {
		return nil, err
	}
	r.node = n
	return r, nil
}

// Via says how r reaches devices, for a person.
func (r *Reacher) Via() string {
	switch {
	case r.cfg.SOCKS != "":
		return "SOCKS5 server " + r.cfg.SOCKS
	case r.sock != "":
		return "the running socksd (" + r.sock + ")"
	}
	return "a node of its own, rendezvous " + relayList(r.cfg)
}

func relayList(cfg ConnectConfig) string {
	var s []string
	for _, a := range cfg.Relays {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

// Dial opens one stream to host:port. A refusal says what it means in
// words mapped from the one classification of outcomes (dialer.Outcome;
// socks.ReplyText for a SOCKS server's reply), then the details.
func (r *Reacher) Dial(ctx context.Context, host string, port uint16) (transport.HalfConn, error) {
	switch {
	case r.cfg.SOCKS != "":
		c, err := socks.DialAuth(ctx, r.cfg.SOCKS, r.cfg.SOCKSAuth, host, port)
		if re, ok := errors.AsType[*socks.ReplyError](err); ok {
			return nil, fmt.Errorf("connect to %s:%d via %s: %s", host, port, r.cfg.SOCKS, socks.ReplyText(re.Code))
		}
		if err != nil {
			return nil, err
		}
		return transport.Conn(c), nil
	case r.sock != "":
		return controlDial(ctx, r.sock, host, port)
	}
	_, isTunnel, err := r.node.Dialer.Device(host)
	if err == nil && !isTunnel {
		return nil, fmt.Errorf("%s is not a .tunnel name (use --socks with a socksd that falls back, or connect directly)", host)
	}
	s, err := r.node.Dialer.Dial(ctx, host, port)
	if err != nil {
		return nil, dialError(host, port, err)
	}
	return s, nil
}

// Close stops what Reach started: the node of its own, if any. Streams
// opened on that node end with it.
func (r *Reacher) Close() {
	if r.node != nil {
		r.node.Close()
	}
}

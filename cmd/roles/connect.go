package roles

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
)

// ConnectConfig is `tunnel connect`: one stream, through a running socksd
// (SOCKS), or else through a node of its own whose key is the home's.
type ConnectConfig struct {
	SOCKS string // HOST:PORT of a SOCKS5 server; "" for a node of its own
	// SOCKSAuth logs in to a SOCKS server that asks (socksd --auth).
	SOCKSAuth *socks.Auth
	Home      string
	Relays    []resolver.RelayAddr
	Path      transport.PathMode
	Log       zerolog.Logger
}

// Connect opens one stream to host:port, within ctx. done releases what it
// started (the node, if any) once the stream is finished with. A refusal
// says what it means in words mapped from the one classification of
// outcomes (dialer.Outcome; socks.ReplyText for a SOCKS server's reply),
// then the details.
func Connect(ctx context.Context, cfg ConnectConfig, host string, port uint16) (s transport.HalfConn, done func(), err error) {
	if cfg.SOCKS != "" {
		c, err := socks.DialAuth(ctx, cfg.SOCKS, cfg.SOCKSAuth, host, port)
		if re, ok := errors.AsType[*socks.ReplyError](err); ok {
			return nil, nil, fmt.Errorf("connect to %s:%d via %s: %s", host, port, cfg.SOCKS, socks.ReplyText(re.Code))
		}
		if err != nil {
			return nil, nil, err
		}
		return transport.Conn(c), func() {}, nil
	}
	fail := func(err error) (transport.HalfConn, func(), error) {
		if why := dialer.Classify(err).Explain(); !strings.HasPrefix(err.Error(), why) {
			err = fmt.Errorf("%s: %w", why, err)
		}
		return nil, nil, fmt.Errorf("connect to %s:%d: %w", host, port, err)
	}
	// Which device a name means is the node's dialer's to say (IDs, and
	// the home's names); here only whether it is a .tunnel name at all.
	if _, isTunnel, _ := resolver.ParseName(host); !isTunnel {
		return nil, nil, fmt.Errorf("%s is not a .tunnel name (use --socks with a socksd that falls back, or connect directly)", host)
	}
	key, err := identity.LoadOrCreate(cfg.Home)
	if err != nil {
		return nil, nil, err
	}
	// The node outlives ctx, which bounds connecting only: the stream
	// runs on it.
	n, err := StartNode(context.WithoutCancel(ctx), NodeConfig{Key: key, Relays: cfg.Relays, Path: cfg.Path,
		Credentials: HomeCredentials(cfg.Home), Names: HomeNames(cfg.Home, cfg.Log), Log: cfg.Log})
	if err != nil {
		return nil, nil, err
	}
	id, _, err := n.Dialer.Device(host)
	if err != nil {
		n.Close()
		return fail(err)
	}
	if s, err = n.Dialer.DialDevice(ctx, id, port); err != nil {
		n.Close()
		return fail(err)
	}
	return s, n.Close, nil
}

package roles

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks"
	"github.com/tunnel-dev/tunnel/transport"
)

// ConnectConfig is how a one-shot command (connect, bind, known-hosts,
// ping) reaches devices; see Reach.
type ConnectConfig struct {
	SOCKS string // HOST:PORT of a SOCKS5 server; "" for a socksd or a node of its own
	// SOCKSAuth logs in to a SOCKS server that asks (socksd --auth).
	SOCKSAuth *socks.Auth
	Home      string
	// PreferSocksd goes through this home's running socksd when one
	// answers, before Relays (which were not given on the command line).
	PreferSocksd bool
	// Relays are the rendezvous nodes of a node of its own.
	Relays []resolver.RelayAddr
	Path   transport.PathMode
	Log    zerolog.Logger
}

// Connect opens one stream to host:port, within ctx, as Reach decides.
// done releases what it started (a node of its own, if any) once the
// stream is finished with.
func Connect(ctx context.Context, cfg ConnectConfig, host string, port uint16) (s transport.HalfConn, done func(), err error) {
	r, err := Reach(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	if s, err = r.Dial(ctx, host, port); err != nil {
		r.Close()
		return nil, nil, err
	}
	return s, r.Close, nil
}

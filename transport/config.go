package transport

import (
	"time"

	"github.com/quic-go/quic-go"
)

// Timings of the connection to a relay. The keep-alive stays well under
// the 30 s UDP timeout of common NATs, and a relay that restarts answers the
// next keep-alive with a stateless reset, so a node notices within one
// period and re-registers.
const (
	// RelayPing is how often a node asks its relay whether it is still
	// there (see resolver/wire.go): a relay that restarted is noticed
	// within one period.
	RelayPing        = 5 * time.Second
	RelayKeepAlive   = 10 * time.Second
	RelayIdleTimeout = 30 * time.Second
	HandshakeTimeout = 5 * time.Second
)

// RelayQUICConfig is the outer connection's configuration.
func RelayQUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  HandshakeTimeout,
		MaxIdleTimeout:        RelayIdleTimeout,
		KeepAlivePeriod:       RelayKeepAlive,
		MaxIncomingStreams:    1 << 12,
		MaxIncomingUniStreams: -1,
	}
}

// PeerQUICConfig is the end-to-end connection's configuration. Streams are
// TCP connections, so the limit is far above quic-go's default of 100; the
// windows let one stream fill a fast path (the bandwidth-delay product of
// 1 Gbit/s at 100 ms is 12.5 MB).
func PeerQUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:           HandshakeTimeout,
		MaxIdleTimeout:                 45 * time.Second,
		KeepAlivePeriod:                15 * time.Second,
		MaxIncomingStreams:             1 << 14,
		MaxIncomingUniStreams:          -1,
		InitialStreamReceiveWindow:     1 << 20,
		MaxStreamReceiveWindow:         16 << 20,
		InitialConnectionReceiveWindow: 2 << 20,
		MaxConnectionReceiveWindow:     32 << 20,
		// Datagrams carry the candidate exchange of direct paths.
		EnableDatagrams: true,
		// quic-go never sees a path switch (innerconn.go), so a packet
		// size it learned on a direct path would stay in use on a relay
		// path with a smaller MTU and be lost there for good; packets keep
		// quic-go's initial 1280 bytes (1317 on an IPv4 wire in a relay
		// frame), which any common path carries.
		DisablePathMTUDiscovery: true,
	}
}

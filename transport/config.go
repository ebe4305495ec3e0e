package transport

import (
	"time"

	"github.com/quic-go/quic-go"
)

// Every timing of the package, in one place.
//
// The connection to a relay: the keep-alive stays well under the 30 s UDP
// timeout of common NATs, and a relay that restarts answers the next
// keep-alive with a stateless reset, so a node notices within one period
// and re-registers.
const (
	// RelayPing is how often a node asks its relay whether it is still
	// there (the registry protocol's ping): a relay that restarted is
	// noticed within one period.
	RelayPing        = 5 * time.Second
	RelayKeepAlive   = 10 * time.Second
	RelayIdleTimeout = 30 * time.Second
	HandshakeTimeout = 5 * time.Second
)

// End-to-end connections.
const (
	peerIdleTimeout = 45 * time.Second
	peerKeepAlive   = 15 * time.Second
)

// Direct paths (disco.go, path.go).
const (
	// pathHeartbeat is how often a confirmed direct path is pinged; it
	// also keeps the NAT mappings on the way open.
	pathHeartbeat = 2 * time.Second
	// pathTrust is how long a direct path is used after its last pong:
	// three heartbeats lost and a little more, then packets go back to the
	// relay.
	pathTrust = 6500 * time.Millisecond
	// probeFirst is the first wait between rounds of pings to every
	// candidate; it doubles up to probeInterval while nothing answers, and
	// probing goes on at that pace for as long as the connection lives.
	probeFirst    = 250 * time.Millisecond
	probeInterval = 5 * time.Second
	// fullProbeEvery is how often every candidate is pinged again while a
	// direct path is in use, so that a clearly faster one (the same LAN)
	// is found.
	fullProbeEvery = 10 * time.Second
	// candidatesEvery is how often candidates are sent again unchanged, in
	// case the datagram carrying them was lost.
	candidatesEvery = 10 * time.Second
	// pingForget is how long an unanswered ping's txid is kept.
	pingForget = 2 * probeInterval
)

// What a stranger can make a node send (disco.go, "Strangers").
const (
	// maxPingsPerRound caps the addresses one probe round of one
	// connection pings (a peer's candidates and the addresses its pings
	// came from, up to 16 of each: all of them take two rounds).
	maxPingsPerRound = 16
	// probeRate and probeBurst are the node's budget of probe pings, over
	// all its connections. A peer with four candidates costs 0.8 pings/s
	// while nothing answers (a round every probeInterval) and 0.4 once its
	// path is found (a full round every fullProbeEvery; heartbeats are
	// outside the budget): the budget covers some 60 such peers probing at
	// once, or 125 with their paths found, and the burst the first fast
	// rounds of a few new connections. At 65 bytes a ping that is 3.3 kB/s
	// whatever the number of connections; past it rounds stop short and
	// the next round of that connection resumes where its last stopped.
	probeRate  = 50
	probeBurst = 100
)

// The liveness rule: a direct path is judged by the data the peer says
// reached it (disco.go, "Liveness").
const (
	// deadPackets and deadBytes: a window in which the peer received less
	// than half of the bytes sent direct kills the path only if at least
	// deadPackets frames are missing, so that one lost packet of an idle
	// ssh session never does; not more, because into a black hole QUIC sends
	// a few packets a heartbeat (its retransmission timer backs off). Or
	// deadBytes: frames are cheap to make up, so frames of garbage that
	// fill in the frame count still leave the bytes missing.
	deadPackets = 2
	deadBytes   = 64 << 10
	// deadHold is how long an address judged dead may not carry the path
	// again; each new death of the same address doubles it, up to
	// deadHoldMax, and an address that stayed clean for deadHoldMax after
	// its hold starts again from deadHold.
	deadHold    = 30 * time.Second
	deadHoldMax = 8 * time.Minute
	// maxBarred bounds the dead addresses a path remembers.
	maxBarred = 2 * maxCandidates
)

// smallPathFor is how long a destination whose path MTU was below our
// datagrams gets plain writes before GSO is tried again (a route change,
// or a path switch that made the path larger).
const smallPathFor = time.Minute

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
		MaxIdleTimeout:                 peerIdleTimeout,
		KeepAlivePeriod:                peerKeepAlive,
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
		// path with a smaller MTU and be lost there for good. Packets
		// have one size, and the node sends them whole or in two
		// fragments as each path allows (pathsize.go).
		DisablePathMTUDiscovery: true,
		InitialPacketSize:       innerPacketSize,
	}
}

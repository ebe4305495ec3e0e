package roles

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"sort"
	"text/tabwriter"

	"github.com/tunnel-dev/tunnel/resolver"
)

// `tunnel status`: what a running socksd, publish or gateway says about
// itself over its control socket (control.go).

// Status is what one running role says about itself.
type Status struct {
	Role     string `json:"role"`
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	// Relay is the rendezvous node the node is registered with now, or,
	// while it is not, the ones it was given (Registered false).
	Relay      string `json:"relay"`
	Registered bool   `json:"registered"`
	// Leased: registered on a lease (a device), with no connection to
	// the relay open.
	Leased   bool   `json:"leased"`
	Observed string `json:"observed,omitempty"`
	PathMode string `json:"path_mode"`
	// Procs is how many cores run the role's Go code at once now
	// (GOMAXPROCS): with --procs auto, one while the role is light and
	// more while it is busy (cmd/roles/procs).
	Procs int          `json:"procs"`
	Peers []PeerStatus `json:"peers"`
}

// PeerStatus is one end-to-end connection.
type PeerStatus struct {
	ID       string `json:"id"`
	Endpoint string `json:"endpoint"`
	Path     string `json:"path"` // "direct" or "relayed"
	// Via is the peer's address on the direct path, or the rendezvous
	// node relaying it: this node's own, or the peer's home node when the
	// peer was reached after a redirect.
	Via      string  `json:"via"`
	RTTms    float64 `json:"rtt_ms"`
	Streams  int64   `json:"streams"`
	BytesOut uint64  `json:"bytes_out"`
	BytesIn  uint64  `json:"bytes_in"`
	// LastRxms is how long ago a packet of the peer last arrived on the
	// path in use, in milliseconds; -1 if none ever did. A path that says
	// direct but carries nothing shows here.
	LastRxms float64 `json:"last_rx_ms"`
	// Packets is how the path in use carries packets: "whole",
	// "fragments" (it drops large datagrams), "probing" or "unprobed"
	// (the peer is a version that answers no size probe).
	Packets string `json:"packets"`
	// PacketsSent is how many end-to-end packets this node sent the
	// peer; PacketsLost how many of them QUIC declared lost and sent
	// again. Losses on a path that loses nothing (a LAN) mean a receiver
	// too slow for the sender.
	PacketsSent uint64 `json:"packets_sent"`
	PacketsLost uint64 `json:"packets_lost"`
}

// statusRoles are the roles that answer status, in the order
// ReadStatus asks them.
var statusRoles = []string{"socksd", "publish", "gateway"}

// StatusPath is the control socket of role in home.
func StatusPath(home, role string) string { return filepath.Join(home, role+".sock") }

// StatusOf describes node n playing role.
func StatusOf(role string, n *Node) Status {
	tn := n.Transport
	d := Status{Role: role, ID: tn.Key().ID().String(), Endpoint: tn.Endpoint().String(),
		PathMode: tn.Mode().String(), Procs: runtime.GOMAXPROCS(0), Peers: []PeerStatus{}}
	if home, ok := n.Resolver.Home(); ok {
		d.Relay, d.Registered, d.Leased = home.String(), true, n.Resolver.Leased()
	} else {
		d.Relay = resolver.RelayListString(n.Resolver.Relays())
	}
	if o := tn.Observed(); o.IsValid() {
		d.Observed = o.String()
	}
	for _, p := range tn.Peers() {
		sp := PeerStatus{ID: p.ID.String(), Endpoint: p.Endpoint.String(), RTTms: float64(p.RTT.Microseconds()) / 1000,
			Streams: p.Streams, BytesOut: p.BytesOut, BytesIn: p.BytesIn, LastRxms: -1, Packets: p.Packets,
			PacketsSent: p.PacketsSent, PacketsLost: p.PacketsLost}
		if p.SinceRx >= 0 {
			sp.LastRxms = float64(p.SinceRx.Microseconds()) / 1000
		}
		if p.Direct.IsValid() {
			sp.Path, sp.Via = "direct", p.Direct.String()
		} else {
			sp.Path, sp.Via = "relayed", p.Relay.String()
		}
		d.Peers = append(d.Peers, sp)
	}
	return d
}

// ReadStatus asks every role running with home. It returns an error when
// none answers.
func ReadStatus(home string) ([]Status, error) {
	var docs []Status
	for _, role := range statusRoles {
		path := StatusPath(home, role)
		if err := checkSocketPath(runtime.GOOS, path); err != nil {
			return docs, fmt.Errorf("ask %s: %w", role, err)
		}
		d, err := askStatus(path)
		if err != nil && noDaemon(path, err) {
			continue
		}
		if err != nil {
			return docs, fmt.Errorf("ask %s: %w", role, err)
		}
		docs = append(docs, d)
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no socksd, publish or gateway is running with home %s", home)
	}
	return docs, nil
}

func askStatus(path string) (Status, error) {
	var d Status
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	c, err := controlRequest(ctx, path, "status")
	if err != nil {
		return d, err
	}
	defer c.Close()
	b, err := io.ReadAll(io.LimitReader(c, 16<<20))
	if err != nil {
		return d, err
	}
	return d, json.Unmarshal(b, &d)
}

// WriteStatus prints docs for a person: one block per role, one line per
// peer.
func WriteStatus(w io.Writer, docs []Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, d := range docs {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		relay := "relay " + d.Relay
		if d.Leased {
			relay += " (lease)"
		}
		if !d.Registered {
			relay = "relay - (not registered; given " + d.Relay + ")"
		}
		fmt.Fprintf(tw, "%s  %s  %s  observed %s  path mode %s  procs %d\n", d.Role, d.ID, relay, orDash(d.Observed), d.PathMode, d.Procs)
		if len(d.Peers) == 0 {
			fmt.Fprintln(tw, "  no peers")
			continue
		}
		sort.Slice(d.Peers, func(a, b int) bool { return d.Peers[a].ID < d.Peers[b].ID })
		fmt.Fprintln(tw, "  PEER\tPATH\tPACKETS\tRTT\tLAST RX\tSTREAMS\tSENT\tRECEIVED\tLOST")
		for _, p := range d.Peers {
			path := "direct " + p.Via
			if p.Path != "direct" {
				path = "relayed via " + p.Via
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%.1f ms\t%s\t%d\t%s\t%s\t%s\n", p.ID, path, orDash(p.Packets), p.RTTms, agoText(p.LastRxms), p.Streams, bytesText(p.BytesOut), bytesText(p.BytesIn), lostText(p.PacketsLost, p.PacketsSent))
		}
	}
	return tw.Flush()
}

// lostText says how many of the packets sent were lost: a count, and the
// share of all sent once there are any.
func lostText(lost, sent uint64) string {
	if lost == 0 || sent == 0 {
		return fmt.Sprint(lost)
	}
	return fmt.Sprintf("%d (%.2g%%)", lost, 100*float64(lost)/float64(sent))
}

// agoText says how long ago, given in milliseconds (-1: never).
func agoText(ms float64) string {
	switch {
	case ms < 0:
		return "never"
	case ms < 60_000:
		return fmt.Sprintf("%.1f s ago", ms/1000)
	case ms < 3_600_000:
		return fmt.Sprintf("%.0f min ago", ms/60_000)
	}
	return fmt.Sprintf("%.1f h ago", ms/3_600_000)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

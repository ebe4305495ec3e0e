package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

// The control socket: a running socksd or publish answers `tunnel status`
// on a Unix socket in its home (socksd.sock, publish.sock). The home is
// created 0700 and the socket chmod 0600: only the owner can ask. A client
// connects, the daemon writes one JSON statusDoc and closes.

type statusDoc struct {
	Role     string       `json:"role"`
	ID       string       `json:"id"`
	Endpoint string       `json:"endpoint"`
	Relay    string       `json:"relay"`
	Observed string       `json:"observed,omitempty"`
	PathMode string       `json:"path_mode"`
	Peers    []statusPeer `json:"peers"`
}

type statusPeer struct {
	ID       string  `json:"id"`
	Endpoint string  `json:"endpoint"`
	Path     string  `json:"path"` // "direct" or "relayed"
	Via      string  `json:"via"`  // the peer's direct address, or the relay
	RTTms    float64 `json:"rtt_ms"`
	Streams  int64   `json:"streams"`
	BytesOut uint64  `json:"bytes_out"`
	BytesIn  uint64  `json:"bytes_in"`
}

func socketPath(home, role string) string { return filepath.Join(home, role+".sock") }

// serveStatus answers status requests until ctx ends or stop is called.
// A socket that cannot be made is logged, not fatal: status is a window,
// not the service.
func serveStatus(ctx context.Context, home, role string, n *node, log zerolog.Logger) (stop func()) {
	path := socketPath(home, role)
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
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
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		log.Warn().Err(err).Msg("no status socket")
		return func() {}
	}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	wg.Go(func() {
		<-ctx.Done()
		ln.Close()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_ = json.NewEncoder(c).Encode(statusOf(role, n))
			c.Close()
		}
	})
	return func() {
		cancel()
		wg.Wait()
		os.Remove(path)
	}
}

func statusOf(role string, n *node) statusDoc {
	d := statusDoc{Role: role, ID: n.Key().ID().String(), Endpoint: n.Endpoint().String(),
		Relay: n.resolver.Relay.String(), PathMode: n.Mode().String(), Peers: []statusPeer{}}
	if o := n.Observed(); o.IsValid() {
		d.Observed = o.String()
	}
	for _, p := range n.Peers() {
		sp := statusPeer{ID: p.ID.String(), Endpoint: p.Endpoint.String(), RTTms: float64(p.RTT.Microseconds()) / 1000,
			Streams: p.Streams, BytesOut: p.BytesOut, BytesIn: p.BytesIn}
		if p.Direct.IsValid() {
			sp.Path, sp.Via = "direct", p.Direct.String()
		} else {
			sp.Path, sp.Via = "relayed", p.Relay.String()
		}
		d.Peers = append(d.Peers, sp)
	}
	return d
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the peers of the running socksd and publish of this home",
		Description: `Asks the socksd and publish processes using this --home (over an
owner-only Unix socket in the home) and prints, per peer: its ID, the path
(direct ADDR, or relayed via the rendezvous node), round-trip time, open
streams and bytes each way. --json prints the raw documents, one per process.`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "machine-readable output"}},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("status takes no arguments")
			}
			home := c.String("home")
			var docs []statusDoc
			for _, role := range []string{"socksd", "publish"} {
				d, err := askStatus(socketPath(home, role))
				if errors.Is(err, os.ErrNotExist) || isRefused(err) {
					continue
				}
				if err != nil {
					return fmt.Errorf("ask %s: %w", role, err)
				}
				docs = append(docs, d)
			}
			if len(docs) == 0 {
				return fmt.Errorf("no socksd or publish is running with home %s", home)
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(docs)
			}
			return printStatus(c.App.Writer, docs)
		},
	}
}

func isRefused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection refused")
}

func askStatus(path string) (statusDoc, error) {
	var d statusDoc
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return d, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(io.LimitReader(c, 16<<20))
	if err != nil {
		return d, err
	}
	return d, json.Unmarshal(b, &d)
}

func printStatus(w io.Writer, docs []statusDoc) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, d := range docs {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "%s  %s  relay %s  observed %s  path mode %s\n", d.Role, d.ID, d.Relay, orDash(d.Observed), d.PathMode)
		if len(d.Peers) == 0 {
			fmt.Fprintln(tw, "  no peers")
			continue
		}
		sort.Slice(d.Peers, func(a, b int) bool { return d.Peers[a].ID < d.Peers[b].ID })
		fmt.Fprintln(tw, "  PEER\tPATH\tRTT\tSTREAMS\tSENT\tRECEIVED")
		for _, p := range d.Peers {
			path := "direct " + p.Via
			if p.Path != "direct" {
				path = "relayed via " + p.Via
			}
			fmt.Fprintf(tw, "  %s\t%s\t%.1f ms\t%d\t%s\t%s\n", p.ID, path, p.RTTms, p.Streams, bytesText(p.BytesOut), bytesText(p.BytesIn))
		}
	}
	return tw.Flush()
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

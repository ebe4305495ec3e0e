package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

// multiFlag collects every occurrence of a flag verbatim (urfave's
// StringSlice would split on commas, which port specs will use).
type multiFlag []string

func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }
func (m *multiFlag) String() string     { return fmt.Sprint([]string(*m)) }

func publishCommand() *cli.Command {
	return &cli.Command{
		Name:      "publish",
		Usage:     "run the device agent: publish local TCP ports as <this-id>.tunnel",
		UsageText: "tunnel publish [--relay ADDR] -public SPEC [-public SPEC ...]",
		Description: `SPEC is [host:]local[:remote]:
   -public 22                   local port 22, reached as <id>.tunnel:22
   -public 2222:22              local port 2222, reached as <id>.tunnel:22
   -public 192.168.1.5:80:8080  a LAN neighbour's port 80, reached as <id>.tunnel:8080
Public ports accept any client. The agent keeps one connection to its
rendezvous node and reconnects by itself; clients reach it end to end.
Find this device's ID with 'tunnel id'.`,
		Flags: []cli.Flag{
			relayFlag(),
			&cli.GenericFlag{Name: "public", Value: &multiFlag{}, Usage: "publish SPEC to any client (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("unexpected argument %q (port specs go after -public)", c.Args().First())
			}
			specs := *c.Generic("public").(*multiFlag)
			if len(specs) == 0 {
				return usagef("nothing to publish: give at least one -public SPEC (e.g. -public 22)")
			}
			var ports []peer.Port
			seen := map[uint16]string{}
			for _, s := range specs {
				p, err := peer.ParsePortSpec(s)
				if err != nil {
					return usageError{err}
				}
				if prev, dup := seen[p.Remote]; dup {
					return usagef("port %d published twice (-public %s and -public %s)", p.Remote, prev, s)
				}
				seen[p.Remote] = s
				ports = append(ports, p)
			}
			relay, err := relayAddr(c, defaultRelay)
			if err != nil {
				return err
			}
			log, err := newLogger(c, false)
			if err != nil {
				return err
			}
			key, err := identity.LoadOrCreate(c.String("home"))
			if err != nil {
				return err
			}
			n, err := startNode(c.Context, key, relay, true, log)
			if err != nil {
				return err
			}
			defer n.close()
			ev := log.Info().Str("id", key.ID().String()).Str("name", key.ID().String()+".tunnel").Str("relay", relay.String())
			for _, p := range ports {
				ev = ev.Str(fmt.Sprintf("port_%d", p.Remote), p.Target)
			}
			ev.Msg("publishing")
			agent := &peer.Agent{Node: n.Node, Ports: ports, Log: log}
			return agent.Serve(c.Context)
		},
	}
}

package main

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
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
		UsageText: "tunnel publish [--relay ADDR] [--fleet FLEET_ID] {-public SPEC | -private SPEC,ID[,ID...] | -protected SPEC} ...",
		Description: `SPEC is [host:]local[:remote]:
   22                   local port 22, reached as <id>.tunnel:22
   2222:22              local port 2222, reached as <id>.tunnel:22
   192.168.1.5:80:8080  a LAN neighbour's port 80, reached as <id>.tunnel:8080

Three access modes, checked here on the device against the client's key
(no relay or gateway can pose as a client):
   -public SPEC              any client, public gateways included
   -private SPEC,ID[,ID...]  only the listed client IDs ('tunnel id' on the client)
   -protected SPEC           only members of the fleet given with --fleet, who hold
                             a credential the fleet admin issued for their key
                             ('tunnel fleet --help' explains fleets)
Flags combine and repeat, e.g. a web page for all and ssh for one laptop:
   tunnel publish -public 80:80 -private 22:22,<laptop-id>
Denied clients get SOCKS reply 0x02 and a log line here with their ID and why.
-proxy-protocol PORT sends a PROXY protocol v2 header naming the client's ID
(TLV 0xE0) to the local service of that published port.

The agent keeps one connection to its rendezvous node and reconnects by
itself. Find this device's ID with 'tunnel id'.`,
		Flags: []cli.Flag{
			relayFlag(),
			&cli.GenericFlag{Name: "public", Value: &multiFlag{}, Usage: "publish SPEC to any client (repeatable)"},
			&cli.GenericFlag{Name: "private", Value: &multiFlag{}, Usage: "publish SPEC,ID[,ID...] to the listed clients only (repeatable)"},
			&cli.GenericFlag{Name: "protected", Value: &multiFlag{}, Usage: "publish SPEC to members of --fleet only (repeatable)"},
			&cli.StringFlag{Name: "fleet", EnvVars: []string{"TUNNEL_FLEET"}, Usage: "fleet ID whose members may use -protected ports"},
			&cli.GenericFlag{Name: "proxy-protocol", Value: &multiFlag{}, Usage: "send a PROXY v2 header with the client ID to published PORT's service (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("unexpected argument %q (port specs go after -public)", c.Args().First())
			}
			ports, fleetID, err := parsePorts(c)
			if err != nil {
				return err
			}
			relay, err := relayAddr(c, defaultRelay)
			if err != nil {
				return err
			}
			log, key, err := loggerAndKey(c)
			if err != nil {
				return err
			}
			n, err := startNode(c.Context, key, relay, true, transport.PathAuto, log)
			if err != nil {
				return err
			}
			defer n.close()
			stopStatus := serveStatus(c.Context, c.String("home"), "publish", n, log)
			defer stopStatus()
			ev := log.Info().Str("id", key.ID().String()).Str("name", key.ID().String()+".tunnel").Str("relay", relay.String())
			for _, p := range ports {
				ev = ev.Str(fmt.Sprintf("port_%d", p.Remote), p.Access.String()+" "+p.Target)
			}
			ev.Msg("publishing")
			agent := &peer.Agent{Node: n.Node, Ports: ports, Fleet: fleetID, Log: log}
			return agent.Serve(c.Context)
		},
	}
}

// parsePorts reads -public, -private, -protected, --fleet and
// -proxy-protocol. Everything is checked before anything starts: a bad
// flag publishes nothing.
func parsePorts(c *cli.Context) ([]peer.Port, identity.ID, error) {
	var fleetID identity.ID
	var ports []peer.Port
	seen := map[uint16]string{}
	add := func(flag, arg string, p peer.Port) error {
		desc := "-" + flag + " " + arg
		if prev, dup := seen[p.Remote]; dup {
			return usagef("port %d published twice (%s and %s)", p.Remote, prev, desc)
		}
		seen[p.Remote] = desc
		ports = append(ports, p)
		return nil
	}
	for _, arg := range *c.Generic("public").(*multiFlag) {
		p, err := peer.ParsePortSpec(arg)
		if err != nil {
			return nil, fleetID, usageError{err}
		}
		if err := add("public", arg, p); err != nil {
			return nil, fleetID, err
		}
	}
	for _, arg := range *c.Generic("private").(*multiFlag) {
		p, err := peer.ParsePrivate(arg)
		if err != nil {
			return nil, fleetID, usageError{err}
		}
		if err := add("private", arg, p); err != nil {
			return nil, fleetID, err
		}
	}
	protected := *c.Generic("protected").(*multiFlag)
	if f := c.String("fleet"); f != "" {
		id, err := identity.ParseID(f)
		if err != nil {
			return nil, fleetID, usagef("--fleet: %w", err)
		}
		fleetID = id
	} else if len(protected) > 0 {
		return nil, fleetID, usagef("-protected ports need --fleet FLEET_ID (the fleet admin's 'tunnel fleet id')")
	}
	for _, arg := range protected {
		p, err := peer.ParsePortSpec(arg)
		if err != nil {
			return nil, fleetID, usageError{err}
		}
		p.Access = peer.Protected
		if err := add("protected", arg, p); err != nil {
			return nil, fleetID, err
		}
	}
	if len(ports) == 0 {
		return nil, fleetID, usagef("nothing to publish: give at least one -public, -private or -protected SPEC (e.g. -public 22)")
	}
	for _, arg := range *c.Generic("proxy-protocol").(*multiFlag) {
		port, err := strconv.ParseUint(arg, 10, 16)
		if err != nil || port == 0 {
			return nil, fleetID, usagef("-proxy-protocol %q: want a published port number", arg)
		}
		i := slices.IndexFunc(ports, func(p peer.Port) bool { return p.Remote == uint16(port) })
		if i < 0 {
			return nil, fleetID, usagef("-proxy-protocol %d: port %d is not published", port, port)
		}
		ports[i].ProxyProtocol = true
	}
	return ports, fleetID, nil
}

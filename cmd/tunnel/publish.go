package main

import (
	"fmt"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

func publishCommand() *cli.Command {
	def := peer.DefaultLimits()
	return withConfig(&cli.Command{
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
itself. Find this device's ID with 'tunnel id'.
Any key can connect to a device: until a port allows a key, its
connections and their streams are capped small (--max-unauthorized*), and
refusals are logged at most 10 times per key per 10 s.`,
		Flags: append([]cli.Flag{
			relayFlag(),
			&cli.StringSliceFlag{Name: "public", Usage: "publish SPEC to any client (repeatable)"},
			&cli.StringSliceFlag{Name: "private", Usage: "publish SPEC,ID[,ID...] to the listed clients only (repeatable)"},
			&cli.StringSliceFlag{Name: "protected", Usage: "publish SPEC to members of --fleet only (repeatable)"},
			&cli.StringFlag{Name: "fleet", EnvVars: []string{"TUNNEL_FLEET"}, Usage: "fleet ID whose members may use -protected ports"},
			&cli.StringSliceFlag{Name: "proxy-protocol", Usage: "send a PROXY v2 header with the client ID to published PORT's service (repeatable)"},
			limitFlag("max-clients", def.MaxConns, "client connections, in all"),
			limitFlag("max-unauthorized", def.MaxUnauthorized, "connections of keys no port allowed yet, in all"),
			limitFlag("max-unauthorized-per-key", def.UnauthorizedPerKey, "connections of one key no port allowed yet"),
			limitFlag("max-unauthorized-streams", def.UnauthorizedStreams, "streams open at a time on such a connection"),
		}, append(metricsFlags(), memoryLimitFlag(), procsFlag())...),
		Action: runPublish,
	}, "public", "private", "protected", "proxy-protocol", "fleet")
}

func runPublish(c *cli.Context) error {
	if c.Args().Len() > 0 {
		return usagef("unexpected argument %q (port specs go after -public)", c.Args().First())
	}
	cfg := roles.DeviceConfig{Home: c.String("home")}
	lc := configOf(c)
	var err error
	if cfg.Ports, cfg.Fleet, err = parsePorts(c, lc, fileOf(lc)); err != nil {
		return err
	}
	if cfg.Relays, err = relays(c, defaultRelay); err != nil {
		return err
	}
	caps, err := limits(c, "max-clients", "max-unauthorized", "max-unauthorized-per-key", "max-unauthorized-streams")
	if err != nil {
		return err
	}
	cfg.Limits = peer.Limits{MaxConns: caps[0], MaxUnauthorized: caps[1], UnauthorizedPerKey: caps[2], UnauthorizedStreams: caps[3]}
	var stopMetrics func()
	if cfg.Log, cfg.Key, cfg.Metrics, stopMetrics, err = startDaemon(c); err != nil {
		return err
	}
	defer stopMetrics()
	d, err := roles.StartDevice(c.Context, cfg)
	if err != nil {
		return err
	}
	releaseStartPages(c.Context, d.Node, cfg.Log)
	defer roles.TrimAfterWork()()
	stop := onReload(c.Context, func() { reloadPublish(c, lc, d, cfg.Log) })
	defer stop()
	return d.Wait()
}

// reloadPublish re-reads the config file and publishes its ports instead
// of the running ones; a file that does not load, or ports that do not
// check, change nothing. Flags given on the command line still win.
func reloadPublish(c *cli.Context, lc *loadedConfig, d *roles.Device, log zerolog.Logger) {
	if lc == nil {
		log.Info().Msg("reload: no --config file, nothing to reload")
		return
	}
	file, err := readConfig(c, lc.path)
	var ports []peer.Port
	var fleet identity.ID
	if err == nil {
		ports, fleet, err = parsePorts(c, lc, file)
	}
	if err != nil {
		log.Error().Err(err).Str("config", lc.path).Msg("reload refused: the running ports stay")
		return
	}
	restart := lc.restartKeys(file)
	lc.file = file
	revoked := d.SetPorts(ports, fleet)
	ev := log.Info().Str("config", lc.path).Int("revoked_streams", revoked)
	for _, p := range ports {
		ev = ev.Str(fmt.Sprintf("port_%d", p.Remote), p.Access.String()+" "+p.Target)
	}
	if len(restart) > 0 {
		ev = ev.Strs("restart_to_apply", restart)
	}
	ev.Msg("reloaded")
}

func fileOf(lc *loadedConfig) *configFile {
	if lc == nil {
		return nil
	}
	return lc.file
}

// parsePorts reads -public, -private, -protected, --fleet and
// -proxy-protocol, and the config file's ports (publishRequest).
// Everything is checked before anything starts: a bad flag publishes
// nothing.
func parsePorts(c *cli.Context, lc *loadedConfig, file *configFile) ([]peer.Port, identity.ID, error) {
	req, err := publishRequest(c, lc, file)
	if err != nil {
		return nil, identity.ID{}, usageError{err}
	}
	ports, fleetID, err := req.Ports()
	if err != nil {
		return nil, fleetID, usageError{err}
	}
	return ports, fleetID, nil
}

package main

import (
	"os"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/resolver"
)

// reachRelayFlag is --relay of the one-shot commands that reach devices
// (connect, bind, known-hosts, ping). Unlike the daemons' --relay it does
// not read TUNNEL_RELAY itself: a relay on the command line goes before
// this home's running socksd, TUNNEL_RELAY after it.
func reachRelayFlag() cli.Flag {
	return &cli.StringFlag{Name: "relay",
		Usage: "reach devices with a node of its own through this rendezvous node, HOST:PORT or ID@HOST:PORT " +
			"(several comma-separated), even when a socksd runs (default: this home's running socksd, else TUNNEL_RELAY)"}
}

// reachConfig is how a one-shot command reaches devices: --relay, else the
// running socksd of --home, else TUNNEL_RELAY (roles.Reach decides).
func reachConfig(c *cli.Context) (roles.ConnectConfig, error) {
	cfg := roles.ConnectConfig{Home: c.String("home")}
	mode, err := pathMode(c)
	if err != nil {
		return cfg, err
	}
	cfg.Path = mode
	v := c.String("relay")
	if v == "" {
		cfg.PreferSocksd = true
		v = os.Getenv("TUNNEL_RELAY")
	}
	if v != "" {
		if cfg.Relays, err = resolver.ParseRelayList(v); err != nil {
			return cfg, usageError{err}
		}
	}
	log, err := newLogger(c, true)
	if err != nil {
		return cfg, err
	}
	cfg.Log = log
	return cfg, nil
}

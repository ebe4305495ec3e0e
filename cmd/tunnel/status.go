package main

import (
	"encoding/json"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the peers of the running socksd, publish and gateway of this home",
		Description: `Asks the socksd, publish and gateway processes using this --home (over an
owner-only Unix socket in the home) and prints, per process, the rendezvous
node it is registered with, and per peer: its ID, the path (direct ADDR, or
relayed via the rendezvous node carrying it), round-trip time, open streams
and bytes each way. --json prints the raw documents, one per process.`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "machine-readable output"}},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			docs, err := roles.ReadStatus(c.String("home"))
			if err != nil {
				return err
			}
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(docs)
			}
			return roles.WriteStatus(c.App.Writer, docs)
		},
	}
}

package main

import (
	"fmt"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

func idCommand() *cli.Command {
	return &cli.Command{
		Name:  "id",
		Usage: "print this node's ID (creating its key on first use)",
		Description: `Prints the node's ID: 52 lowercase characters, the z-base-32 form of its
Ed25519 public key. A device is reached as <ID>.tunnel. The key is created
on first use in the home directory (file node.key, mode 0600).`,
		Action: func(c *cli.Context) error {
			if c.Args().Len() > 0 {
				return usagef("id takes no arguments")
			}
			key, err := identity.LoadOrCreate(c.String("home"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.App.Writer, key.ID())
			return err
		},
	}
}

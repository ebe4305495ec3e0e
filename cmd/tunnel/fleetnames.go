package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

func fleetNamesCommand() *cli.Command {
	cmd := &cli.Command{
		Name:  "names",
		Usage: "the fleet's names, signed by the fleet key for every member",
		UsageText: `tunnel fleet names add NAME ID
tunnel fleet names rm NAME
tunnel fleet names list [--json]
tunnel fleet names export > names.signed`,
		Description: `Run by the fleet admin, in the home holding fleet.key. The list is kept
signed, in fleet.names beside the key; each change signs a new version
with a higher serial. Members install it with 'tunnel name import
names.signed': it is checked against the fleet key they joined, a changed
line is refused, and an older version never replaces a newer one. A name a
member adds themselves wins over the fleet's.`,
		Subcommands: []*cli.Command{
			fleetNamesAddCommand(),
			fleetNamesRmCommand(),
			fleetNamesListCommand(),
			fleetNamesExportCommand(),
		},
	}
	return commandGroup(cmd)
}

func fleetNamesAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "name a device for every member of the fleet",
		UsageText: "tunnel fleet names add NAME ID",
		Action: func(c *cli.Context) error {
			name, id, err := parseNameArgs(c, "fleet names add")
			if err != nil {
				return err
			}
			home, key, l, err := loadFleetNames(c)
			if err != nil {
				return err
			}
			if err := l.Set(name, id); err != nil {
				return usagef("fleet names add: %w", err)
			}
			if _, err := fleet.SaveNames(home, key, l, time.Now()); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "%s.tunnel → %s in fleet %s's names, serial %d ('tunnel fleet names export' for members)\n",
				name, id, l.Fleet.Short(), l.Serial)
			return err
		},
	}
}

func fleetNamesRmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove a name from the fleet's names",
		UsageText: "tunnel fleet names rm NAME",
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("fleet names rm needs one NAME, got %d arguments", c.Args().Len())
			}
			home, key, l, err := loadFleetNames(c)
			if err != nil {
				return err
			}
			name := c.Args().First()
			if !l.Remove(name) {
				return usagef("fleet names rm: %q is not one of fleet %s's names (tunnel fleet names list)", name, l.Fleet.Short())
			}
			if _, err := fleet.SaveNames(home, key, l, time.Now()); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "removed %s from fleet %s's names, serial %d\n", name, l.Fleet.Short(), l.Serial)
			return err
		},
	}
}

func fleetNamesListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the fleet's names",
		Description: `One line per name: NAME and ID, as the fleet last signed them. --json
prints an object with the fleet, serial, issue time and names.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON object"},
		},
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			_, _, l, err := loadFleetNames(c)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				type entry struct {
					Name string `json:"name"`
					ID   string `json:"id"`
				}
				out := struct {
					Fleet  string  `json:"fleet"`
					Serial uint64  `json:"serial"`
					Issued string  `json:"issued,omitempty"`
					Names  []entry `json:"names"`
				}{Fleet: l.Fleet.String(), Serial: l.Serial, Names: []entry{}}
				if l.Serial != 0 {
					out.Issued = l.Issued.Format(time.RFC3339)
				}
				for _, e := range l.Entries {
					out.Names = append(out.Names, entry{e.Name, e.ID.String()})
				}
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			}
			if len(l.Entries) == 0 {
				fmt.Fprintln(c.App.ErrWriter, "no fleet names yet: 'tunnel fleet names add NAME ID'")
			}
			for _, e := range l.Entries {
				if _, err := fmt.Fprintf(c.App.Writer, "%s %s\n", e.Name, e.ID); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func fleetNamesExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "print the fleet's signed names, for members to import",
		UsageText: "tunnel fleet names export > names.signed",
		Action: func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			home := c.String("home")
			key, err := fleet.LoadKey(home)
			if err != nil {
				return err
			}
			signed, err := fleet.ExportNames(home, key)
			if err != nil {
				return err
			}
			if _, err := c.App.Writer.Write(signed); err != nil {
				return fmt.Errorf("write fleet names: %w", err)
			}
			return nil
		},
	}
}

// loadFleetNames loads, from the admin's home, the fleet key and the names
// it last signed: what every subcommand but export starts from.
func loadFleetNames(c *cli.Context) (home string, key *identity.Key, l *fleet.NameList, err error) {
	home = c.String("home")
	if key, err = fleet.LoadKey(home); err != nil {
		return home, nil, nil, err
	}
	l, err = fleet.LoadNames(home, key)
	return home, key, l, err
}

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/resolver/names"
)

func nameCommand() *cli.Command {
	cmd := &cli.Command{
		Name:  "name",
		Usage: "names you choose for devices: NAME.tunnel instead of <device-id>.tunnel",
		UsageText: `tunnel name add NAME ID
tunnel name rm NAME
tunnel name list [--json]
tunnel name import FILE|-`,
		Description: `A name is one DNS label (letters, digits, hyphens; not itself a device ID)
kept in this home. NAME.tunnel then works wherever <device-id>.tunnel does on
this machine — socksd's SOCKS and HTTP proxy, 'tunnel connect' — and a
running socksd picks up a change within a second. Names never leave this
machine; the public gateway serves IDs only.

'tunnel name import' takes the names a fleet admin signed ('tunnel fleet
names export'), for a fleet this node joined; a later import of that fleet
replaces its names, an older one is refused. A name you add wins over a
fleet's; between two fleets, the fleet whose ID sorts first wins.`,
		Subcommands: []*cli.Command{
			nameAddCommand(),
			nameRmCommand(),
			nameListCommand(),
			nameImportCommand(),
		},
	}
	return commandGroup(cmd)
}

// parseNameArgs reads NAME ID: a pet name, and a device ID with or
// without ".tunnel".
func parseNameArgs(c *cli.Context, what string) (string, identity.ID, error) {
	if c.Args().Len() != 2 {
		return "", identity.ID{}, usagef("%s needs NAME and ID, got %d arguments", what, c.Args().Len())
	}
	name, err := identity.ParsePetName(c.Args().Get(0))
	if err != nil {
		return "", identity.ID{}, usagef("%s: NAME: %w", what, err)
	}
	id, err := parseDeviceID(c.Args().Get(1))
	if err != nil {
		return "", identity.ID{}, usagef("%s: ID: %w", what, err)
	}
	return name, id, nil
}

// parseDeviceID parses a device ID given with or without ".tunnel" (and
// a final dot), in any case.
func parseDeviceID(s string) (identity.ID, error) {
	s = strings.TrimSuffix(s, ".")
	if n := len(s) - len(resolver.Suffix); n > 0 && strings.EqualFold(s[n:], resolver.Suffix) {
		s = s[:n]
	}
	return identity.ParseID(s)
}

func nameAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "name a device: NAME.tunnel reaches ID",
		UsageText: "tunnel name add NAME ID",
		Action: func(c *cli.Context) error {
			name, id, err := parseNameArgs(c, "name add")
			if err != nil {
				return err
			}
			prev, err := names.Add(c.String("home"), name, id)
			if err != nil {
				return err
			}
			if !prev.IsZero() && prev != id {
				_, err = fmt.Fprintf(c.App.Writer, "%s.tunnel → %s (was %s)\n", name, id, prev)
			} else {
				_, err = fmt.Fprintf(c.App.Writer, "%s.tunnel → %s\n", name, id)
			}
			return err
		},
	}
}

func nameRmCommand() *cli.Command {
	return &cli.Command{
		Name:      "rm",
		Usage:     "remove a name you added",
		UsageText: "tunnel name rm NAME",
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("name rm needs one NAME, got %d arguments", c.Args().Len())
			}
			id, err := names.Remove(c.String("home"), c.Args().First())
			if errors.Is(err, names.ErrUnknownName) {
				return usageError{err}
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "removed %s (was %s)\n", strings.ToLower(c.Args().First()), id)
			return err
		},
	}
}

func nameListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list this home's names: yours and your fleets'",
		Description: `One line per name: NAME, ID, and where it comes from ("local", or
"fleet <fleet-id>"); a name that another entry overrides says "shadowed by"
that entry. --json prints a JSON array instead. A damaged names file is
reported after the names that could be read.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("name list takes no arguments")
			}
			list, listErr := names.List(c.String("home"))
			if list == nil {
				list = []names.Entry{}
			}
			var err error
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				err = enc.Encode(list)
			} else {
				if len(list) == 0 && listErr == nil {
					fmt.Fprintln(c.App.ErrWriter, "no names yet: 'tunnel name add NAME ID', or 'tunnel name import FILE' from a fleet admin")
				}
				for _, e := range list {
					from := "local"
					if e.Source == "fleet" {
						from = "fleet " + e.Fleet
					}
					line := fmt.Sprintf("%s %s %s", e.Name, e.ID, from)
					switch {
					case e.ShadowedBy == "local":
						line += " (shadowed by local)"
					case e.ShadowedBy != "":
						line += " (shadowed by fleet " + e.ShadowedBy + ")"
					}
					if _, err = fmt.Fprintln(c.App.Writer, line); err != nil {
						break
					}
				}
			}
			return errors.Join(listErr, err)
		},
	}
}

func nameImportCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "take the names a fleet admin signed (FILE, or - for standard input)",
		UsageText: "tunnel name import FILE|-",
		Description: `FILE is what 'tunnel fleet names export' printed. It is checked against the
key of the fleet it names, which must be a fleet this node joined ('tunnel
fleet list'); a changed line, another fleet's list or an older list than the
one imported is refused, and nothing changes. It replaces the names imported
before from that fleet.`,
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("name import needs one FILE (or - for standard input), got %d arguments", c.Args().Len())
			}
			data, src, err := fleet.ReadNamesFrom(c.Args().First(), c.App.Reader)
			if err != nil {
				return usagef("read names from %s: %w", src, err)
			}
			res, err := names.Import(c.String("home"), data)
			if errors.Is(err, fleet.ErrBadNames) || errors.Is(err, names.ErrNotJoined) || errors.Is(err, names.ErrRollback) {
				return usagef("import names from %s: %w", src, err)
			}
			if err != nil {
				return err
			}
			l := res.List
			switch {
			case res.Unchanged:
				_, err = fmt.Fprintf(c.App.Writer, "names of fleet %s unchanged (serial %d already imported)\n", l.Fleet, l.Serial)
			case res.Previous != 0:
				_, err = fmt.Fprintf(c.App.Writer, "imported %d names of fleet %s, serial %d (replacing serial %d)\n", len(l.Entries), l.Fleet, l.Serial, res.Previous)
			default:
				_, err = fmt.Fprintf(c.App.Writer, "imported %d names of fleet %s, serial %d\n", len(l.Entries), l.Fleet, l.Serial)
			}
			return err
		},
	}
}

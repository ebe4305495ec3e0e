package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

func fleetCommand() *cli.Command {
	cmd := &cli.Command{
		Name:  "fleet",
		Usage: "run a fleet, or join one: membership credentials for -protected ports",
		UsageText: `tunnel fleet create
tunnel fleet id
tunnel fleet add [--expires DURATION] [--out FILE] MEMBER_ID
tunnel fleet join FILE|-
tunnel fleet list [--json]
tunnel fleet names add|rm|list|export …`,
		Description: `A fleet lets a device publish a port to a group of clients without listing
each one: 'tunnel publish --fleet <fleet-id> -protected 22' lets in any
client that holds a credential the fleet key signed for that client's own
key. The device checks it offline on every connection; a credential copied
to another machine is useless there.

The fleet admin, once:
   tunnel fleet create          makes fleet.key in the home, prints the fleet ID
For each member:
   member:  tunnel id           and sends the printed node ID to the admin
   admin:   tunnel fleet add <member-id> > member.cert
                                and sends member.cert to the member (it is not secret)
   member:  tunnel fleet join member.cert
                                socksd and 'tunnel connect' then present it
On each device:
   tunnel publish --fleet <fleet-id> -protected 22

Credentials expire (90 days unless 'fleet add --expires' says otherwise), and
expiry is the only way a membership ends: issue shorter ones for people who
may leave, and new ones before the old expire. Keep fleet.key secret and
backed up: whoever holds it can admit anyone, and without it every device
needs a new fleet ID and every member a new credential.
Credentials are OpenSSH user certificates, so
   ssh-keygen -s fleet.key -I <label> -n <member-id> -V +30d member.pub
issues one too (member.pub: the member's key, 'ssh-keygen -y -f node.key').`,
		Subcommands: []*cli.Command{
			fleetCreateCommand(),
			fleetIDCommand(),
			fleetAddCommand(),
			fleetJoinCommand(),
			fleetListCommand(),
			fleetNamesCommand(),
		},
	}
	return commandGroup(cmd)
}

func fleetCreateCommand() *cli.Command {
	return &cli.Command{
		Name:  "create",
		Usage: "make this home's fleet key (fleet.key) and print the fleet ID",
		Description: `Run once, by the fleet admin. Prints the fleet ID, which devices take with
'tunnel publish --fleet <fleet-id>'. An existing fleet key is never
replaced: it signed every credential of its fleet.`,
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("fleet create takes no arguments")
			}
			key, err := fleet.Create(c.String("home"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.App.Writer, key.ID())
			return err
		},
	}
}

func fleetIDCommand() *cli.Command {
	return &cli.Command{
		Name:  "id",
		Usage: "print the ID of this home's fleet",
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("fleet id takes no arguments")
			}
			key, err := fleet.LoadKey(c.String("home"))
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(c.App.Writer, key.ID())
			return err
		},
	}
}

func fleetAddCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "issue a membership credential for MEMBER_ID (a node ID, from 'tunnel id')",
		UsageText: "tunnel fleet add [--expires DURATION] [--out FILE] MEMBER_ID > member.cert",
		Description: `Run by the fleet admin. Prints the credential, one line in OpenSSH
certificate format, or writes it to --out FILE. It is not secret: it is
valid only together with the member's own key. The member installs it with
'tunnel fleet join FILE'.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "expires", Value: "2160h",
				Usage: "how long the credential is valid: a duration (720h) or days (30d); 2160h is 90 days"},
			&cli.StringFlag{Name: "out", Usage: "write the credential to FILE instead of standard output"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Len() == 0 {
				return usagef("fleet add needs MEMBER_ID, the member's node ID ('tunnel id' on the member's machine)")
			}
			// Flag parsing stops at the first argument; the
			// flags are as welcome after MEMBER_ID as before it.
			if err := setFlagsAfterArgs(c, c.Args().Slice()[1:]); err != nil {
				return err
			}
			member, err := identity.ParseID(c.Args().First())
			if err != nil {
				return usagef("fleet add: MEMBER_ID: %w", err)
			}
			validFor, err := fleet.ParseValidity(c.String("expires"))
			if err != nil {
				return usagef("--expires: %w", err)
			}
			key, err := fleet.LoadKey(c.String("home"))
			if err != nil {
				return err
			}
			cred, err := fleet.Issue(key, member, validFor, time.Now())
			if err != nil {
				return err
			}
			if out := c.String("out"); out != "" {
				err = fleet.Save(out, cred)
			} else if _, err = c.App.Writer.Write(cred.Marshal()); err != nil {
				err = fmt.Errorf("write credential for %s: %w", member, err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(c.App.ErrWriter, "issued a credential of fleet %s for %s, valid until %s\n",
				cred.Fleet.Short(), member, cred.ValidBefore.Format(time.RFC3339))
			return nil
		},
	}
}

// setFlagsAfterArgs applies the command's own flags found in args, as
// --name VALUE or --name=VALUE, one dash or two. Every flag of the commands
// that call it takes a value.
func setFlagsAfterArgs(c *cli.Context, args []string) error {
	for len(args) > 0 {
		arg := args[0]
		args = args[1:]
		if !strings.HasPrefix(arg, "-") || arg == "-" {
			return usagef("unexpected argument %q", arg)
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		known := false
		for _, f := range c.Command.Flags {
			for _, n := range f.Names() {
				known = known || n == name
			}
		}
		if !known || name == "help" || name == "h" {
			return usagef("unknown flag %s", arg)
		}
		if !hasValue {
			if len(args) == 0 {
				return usagef("flag %s needs a value", arg)
			}
			value, args = args[0], args[1:]
		}
		if err := c.Set(name, value); err != nil {
			return usagef("flag %s: %w", arg, err)
		}
	}
	return nil
}

func fleetJoinCommand() *cli.Command {
	return &cli.Command{
		Name:      "join",
		Usage:     "install a credential from the fleet admin (FILE, or - for standard input)",
		UsageText: "tunnel fleet join FILE|-",
		Description: `Checks that the credential was issued for this node's key ('tunnel id')
and has not expired, and installs it in the home (fleets/<fleet-id>.cert),
replacing an older one of the same fleet. socksd and 'tunnel connect'
present it to devices of that fleet.`,
		Action: func(c *cli.Context) error {
			if c.Args().Len() != 1 {
				return usagef("fleet join needs one FILE (or - for standard input), got %d arguments", c.Args().Len())
			}
			cred, name, err := fleet.ReadNamed(c.Args().First(), c.App.Reader)
			if errors.Is(err, fleet.ErrBadCredential) {
				return usagef("read credential from %s: %w", name, err)
			} else if err != nil {
				return fmt.Errorf("read credential from %s: %w", name, err)
			}
			key, err := identity.LoadOrCreate(c.String("home"))
			if err != nil {
				return err
			}
			if err := fleet.Install(c.String("home"), cred, key.ID()); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.App.Writer, "joined fleet %s, valid until %s\n", cred.Fleet, cred.ValidBefore.Format(time.RFC3339))
			return err
		},
	}
}

func fleetListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list the fleets this node holds credentials for",
		Description: `One line per credential: fleet ID, valid until (RFC 3339), and valid,
expired or not-yet-valid. --json prints a JSON array instead. A damaged
file among the credentials is reported after the others are listed.`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array"},
		},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("fleet list takes no arguments")
			}
			held, heldErr := fleet.Held(c.String("home"))
			if len(held) == 0 && heldErr == nil {
				fmt.Fprintln(c.App.ErrWriter, "no fleet credentials held; ask a fleet admin for one and run 'tunnel fleet join FILE'")
				return nil
			}
			now := time.Now()
			list := make([]fleet.Summary, 0, len(held))
			for _, cred := range held {
				list = append(list, cred.Summary(now))
			}
			var err error
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				err = enc.Encode(list)
			} else {
				for _, h := range list {
					if _, err = fmt.Fprintf(c.App.Writer, "%s %s %s\n", h.Fleet, h.ValidUntil, h.Status); err != nil {
						break
					}
				}
			}
			return errors.Join(heldErr, err)
		},
	}
}

package cli

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// ShowHelp prints the help of c's command: its subcommands and flags, or,
// when c is the program's, the program's commands and global flags.
func ShowHelp(c *Context) error {
	if c.parent == nil {
		return showAppHelp(c)
	}
	return writeCommandHelp(c.App.Writer, c.Command, c.App.Flags)
}

func showAppHelp(c *Context) error {
	a := c.App
	var b strings.Builder
	section(&b, "NAME", a.Name+" - "+a.Usage)
	section(&b, "USAGE", a.Name+" [global options] COMMAND [options] [arguments...]")
	if a.Version != "" {
		section(&b, "VERSION", a.Version)
	}
	if a.Description != "" {
		section(&b, "DESCRIPTION", a.Description)
	}
	if len(a.Commands) > 0 {
		section(&b, "COMMANDS", commandList(a.Commands))
	}
	extra := [][2]string{{"--help, -h", "show help"}}
	if a.Version != "" {
		extra = append(extra, [2]string{"--version, -v", "print the version"})
	}
	section(&b, "GLOBAL OPTIONS", flagList(a.Flags, extra))
	_, err := io.WriteString(a.Writer, b.String())
	return err
}

// ErrNoCommand is ShowCommandHelp's answer for a name that is no command.
var ErrNoCommand = errors.New("no such command")

// ShowCommandHelp prints the help of the command called name of c's
// command (the program's, when c is the program's), or returns
// ErrNoCommand.
func ShowCommandHelp(c *Context, name string) error {
	cmd := findCommand(c.Command.Subcommands, name)
	if cmd == nil {
		return fmt.Errorf("%w: %q", ErrNoCommand, name)
	}
	cmd.HelpName = c.Command.HelpName + " " + cmd.Name
	return writeCommandHelp(c.App.Writer, cmd, c.App.Flags)
}

func writeCommandHelp(w io.Writer, cmd *Command, globals []Flag) error {
	var b strings.Builder
	name := cmd.HelpName
	section(&b, "NAME", name+" - "+cmd.Usage)
	usage := cmd.UsageText
	if usage == "" {
		if len(cmd.Subcommands) > 0 {
			usage = name + " COMMAND [options] [arguments...]"
		} else {
			usage = name + " [options] [arguments...]"
		}
	}
	section(&b, "USAGE", usage)
	if cmd.Description != "" {
		section(&b, "DESCRIPTION", cmd.Description)
	}
	if len(cmd.Subcommands) > 0 {
		section(&b, "COMMANDS", commandList(cmd.Subcommands))
	}
	section(&b, "OPTIONS", flagList(cmd.Flags, [][2]string{{"--help, -h", "show help"}}))
	var gs []string
	for _, f := range globals {
		if !f.spec().hidden {
			gs = append(gs, "--"+f.Names()[0])
		}
	}
	if len(gs) > 0 {
		root, _, _ := strings.Cut(name, " ")
		list := gs[len(gs)-1]
		if len(gs) > 1 {
			list = strings.Join(gs[:len(gs)-1], ", ") + " and " + list
		}
		section(&b, "GLOBAL OPTIONS", list+" go before or after the command (see '"+root+" --help')")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// section writes a titled block, its text indented by three spaces.
func section(b *strings.Builder, title, text string) {
	if b.Len() > 0 {
		b.WriteByte('\n')
	}
	b.WriteString(title + ":\n")
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if line != "" {
			b.WriteString("   ")
		}
		b.WriteString(line + "\n")
	}
}

func commandList(cmds []*Command) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, c := range cmds {
		if !c.Hidden {
			fmt.Fprintf(tw, "%s\t%s\n", c.Name, c.Usage)
		}
	}
	tw.Flush()
	return b.String()
}

// flagList lists flags, one a line: their names with the value's
// placeholder, the usage, the default and the environment variables;
// extra lines (names, usage) after them.
func flagList(flags []Flag, extra [][2]string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	for _, f := range flags {
		s := f.spec()
		if s.hidden {
			continue
		}
		placeholder, usage := placeholder(f, s.usage)
		var ns []string
		for _, n := range f.Names() {
			dash := "--"
			if len(n) == 1 {
				dash = "-"
			}
			ns = append(ns, strings.TrimSpace(dash+n+" "+placeholder))
		}
		if def := s.value.String(); def != "" && def != "0" && def != "false" && def != "0s" {
			if _, ok := f.(*StringFlag); ok {
				def = strconv.Quote(def)
			}
			usage += " (default: " + def + ")"
		}
		for _, env := range s.env {
			usage += " [$" + env + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\n", strings.Join(ns, ", "), usage)
	}
	for _, e := range extra {
		fmt.Fprintf(tw, "%s\t%s\n", e[0], e[1])
	}
	tw.Flush()
	return b.String()
}

// placeholder is the word standing for f's value in the help: the first
// `word` in backquotes in its usage (then the usage without the quotes),
// else one by its type; none for a switch.
func placeholder(f Flag, usage string) (string, string) {
	if before, rest, ok := strings.Cut(usage, "`"); ok {
		if word, after, ok := strings.Cut(rest, "`"); ok {
			return word, before + word + after
		}
	}
	switch f.(type) {
	case *BoolFlag:
		return "", usage
	case *IntFlag, *UintFlag:
		return "N", usage
	case *Float64Flag:
		return "NUMBER", usage
	case *DurationFlag:
		return "DURATION", usage
	}
	return "VALUE", usage
}

package cli

import (
	"context"
	"flag"
	"fmt"
	"time"
)

// Context is what a command's action is given: the command, its flags and
// its arguments, and the context of the run (embedded; replace it to pass
// values down).
type Context struct {
	context.Context
	App     *App
	Command *Command

	parent *Context // the group the command was named in; nil for the program
	root   *Context // the program's
	fs     *flag.FlagSet
}

// Lineage is c and then the contexts of the groups around it, the
// program's last.
func (c *Context) Lineage() []*Context {
	var out []*Context
	for l := c; l != nil; l = l.parent {
		out = append(out, l)
	}
	return out
}

// lookup finds the flag called name, nearest command first.
func (c *Context) lookup(name string) *flag.Flag {
	for l := c; l != nil; l = l.parent {
		if f := l.fs.Lookup(name); f != nil {
			return f
		}
	}
	return nil
}

// value is the value of the flag called name, or nil if no command of the
// lineage has one: a programming error, which the getters answer with the
// zero value, as a flag never given would.
func (c *Context) value(name string) any {
	if f := c.lookup(name); f != nil {
		return f.Value.(flag.Getter).Get()
	}
	return nil
}

// String is the value of a StringFlag.
func (c *Context) String(name string) string { v, _ := c.value(name).(string); return v }

// Bool is the value of a BoolFlag.
func (c *Context) Bool(name string) bool { v, _ := c.value(name).(bool); return v }

// Int is the value of an IntFlag.
func (c *Context) Int(name string) int { v, _ := c.value(name).(int); return v }

// Uint is the value of a UintFlag.
func (c *Context) Uint(name string) uint { v, _ := c.value(name).(uint); return v }

// Float64 is the value of a Float64Flag.
func (c *Context) Float64(name string) float64 { v, _ := c.value(name).(float64); return v }

// Duration is the value of a DurationFlag.
func (c *Context) Duration(name string) time.Duration {
	v, _ := c.value(name).(time.Duration)
	return v
}

// StringSlice is the values of a StringSliceFlag, in the order given.
func (c *Context) StringSlice(name string) []string { v, _ := c.value(name).([]string); return v }

// IsSet reports whether the flag called name (or one of its aliases) was
// given, on the command line, by its environment variable, or by Set.
func (c *Context) IsSet(name string) bool {
	f := c.lookup(name)
	if f == nil {
		return false
	}
	set := false
	for l := c; l != nil && !set; l = l.parent {
		l.fs.Visit(func(g *flag.Flag) {
			// Aliases share their flag's value.
			set = set || g.Value == f.Value
		})
	}
	return set
}

// Set sets the flag called name as if the command line had given it once
// more with value v.
func (c *Context) Set(name, v string) error {
	for l := c; l != nil; l = l.parent {
		if l.fs.Lookup(name) != nil {
			return l.fs.Set(name, v)
		}
	}
	return fmt.Errorf("no flag --%s", name)
}

// Args are the words after the command's flags (and, for a group, that
// named no subcommand).
func (c *Context) Args() Args { return Args(c.fs.Args()) }

// NArg is the number of Args.
func (c *Context) NArg() int { return c.fs.NArg() }

// Args are a command's arguments.
type Args []string

// Get is the i-th argument, or "".
func (a Args) Get(i int) string {
	if i < 0 || i >= len(a) {
		return ""
	}
	return a[i]
}

// First is the first argument, or "".
func (a Args) First() string { return a.Get(0) }

// Tail is the arguments after the first.
func (a Args) Tail() []string {
	if len(a) < 2 {
		return nil
	}
	return a[1:]
}

// Len is the number of arguments.
func (a Args) Len() int { return len(a) }

// Present reports whether there is any argument.
func (a Args) Present() bool { return len(a) > 0 }

// Slice is the arguments as a slice.
func (a Args) Slice() []string { return a }

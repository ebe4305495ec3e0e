package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
)

// A config file is a YAML mapping whose keys are the long flags of the
// command it is given to (and the global ones: home, log-level,
// log-format), each with the value the flag would take: a scalar, or a
// list for a repeatable flag. Keys are checked against the command's flags
// as it runs, so a flag added to a command is a key of its file with no
// change here. A flag given on the command line, or through its TUNNEL_*
// environment variable, wins over the file.

// configFlag is --config.
func configFlag() cli.Flag {
	return &cli.StringFlag{Name: "config", Usage: "read flags from YAML `FILE`: keys are this command's long flags, e.g. 'relay: HOST:7443'; " +
		"flags and TUNNEL_* environment variables win over it (see examples/)"}
}

// withConfig gives cmd --config: before its action runs, the file's keys
// set the flags the command line did not. Keys named in own are checked
// but left to the action, which reads them with configOf (publish's port
// flags, which the file's ports list joins).
func withConfig(cmd *cli.Command, own ...string) *cli.Command {
	cmd.Flags = append(cmd.Flags, configFlag())
	action := cmd.Action
	cmd.Action = func(c *cli.Context) error {
		lc, err := applyConfig(c, own)
		if err != nil {
			return err
		}
		if lc != nil {
			c.Context = context.WithValue(c.Context, configKey{}, lc)
		}
		return action(c)
	}
	return cmd
}

// applyConfig reads --config, if given, and sets from it the flags the
// command line did not.
func applyConfig(c *cli.Context, own []string) (*loadedConfig, error) {
	path := c.String("config")
	if path == "" {
		return nil, nil
	}
	lc := &loadedConfig{path: path, own: own, cmdline: map[string]bool{}}
	for _, f := range configurable(c) {
		if c.IsSet(f.name) {
			lc.cmdline[f.name] = true
		}
	}
	file, err := readConfig(c, path)
	if err != nil {
		return nil, usageError{err}
	}
	if err := lc.apply(c, file); err != nil {
		return nil, err
	}
	lc.file = file
	return lc, nil
}

type configKey struct{}

// loadedConfig is the config file a command started with.
type loadedConfig struct {
	path    string
	own     []string        // keys the action reads itself
	cmdline map[string]bool // flags given on the command line (or env)
	file    *configFile
}

// configOf is the config file c's command started with; nil without
// --config.
func configOf(c *cli.Context) *loadedConfig {
	lc, _ := c.Context.Value(configKey{}).(*loadedConfig)
	return lc
}

// apply sets, from file, each flag the command line did not set.
func (lc *loadedConfig) apply(c *cli.Context, file *configFile) error {
	for _, k := range file.keys {
		if lc.cmdline[k] || slices.Contains(lc.own, k) {
			continue
		}
		for _, v := range file.values[k] {
			if err := c.Set(k, v); err != nil {
				return usagef("config %s: %s: %v", lc.path, k, err)
			}
		}
	}
	return nil
}

// restartKeys are the keys, set in neither command line, whose values
// differ between the file the command started with and next, leaving out
// the keys the action reads itself: what a reload cannot apply.
func (lc *loadedConfig) restartKeys(next *configFile) []string {
	var out []string
	seen := map[string]bool{}
	for _, k := range append(slices.Clone(lc.file.keys), next.keys...) {
		if seen[k] || lc.cmdline[k] || slices.Contains(lc.own, k) {
			continue
		}
		seen[k] = true
		if !slices.Equal(lc.file.values[k], next.values[k]) {
			out = append(out, k)
		}
	}
	return out
}

// configFile is a config file, read and checked.
type configFile struct {
	keys   []string              // flag keys, in file order
	values map[string][]string   // each flag's values, as its command-line text
	nodes  map[string]*yaml.Node // keys that are no flag (extraConfigKeys)
}

// extraConfigKeys are the keys that are no flag, by command, with the
// check of their value.
var extraConfigKeys = map[string]map[string]func(*yaml.Node) error{
	"publish": {"ports": func(n *yaml.Node) error { _, err := portEntries(n); return err }},
}

// settable is a flag a config file may set.
type settable struct {
	name       string
	flag       cli.Flag
	repeatable bool
}

// configurable lists the flags of c's command and the global ones, by
// their long names.
func configurable(c *cli.Context) []settable {
	var out []settable
	add := func(fs []cli.Flag) {
		for _, f := range fs {
			name := f.Names()[0]
			if name == "config" || name == "help" || name == "version" || len(name) < 2 {
				continue
			}
			out = append(out, settable{name: name, flag: f, repeatable: repeatable(f)})
		}
	}
	add(c.Command.Flags)
	add(c.App.Flags)
	return out
}

func repeatable(f cli.Flag) bool {
	_, ok := f.(*cli.StringSliceFlag)
	return ok
}

// maxConfigSize bounds what reading a config file costs.
const maxConfigSize = 1 << 20

// readConfig reads and checks the config file at path for c's command:
// every key one of its flags (or an extra key), every value of the flag's
// type. Its errors name the file and the line.
func readConfig(c *cli.Context, path string) (*configFile, error) {
	fail := func(line int, format string, args ...any) (*configFile, error) {
		return nil, fmt.Errorf("config %s: line %d: %s", path, line, fmt.Sprintf(format, args...))
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if st.Size() > maxConfigSize {
		return nil, fmt.Errorf("config %s: %d bytes, more than a config file's %d", path, st.Size(), maxConfigSize)
	}
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	file := &configFile{values: map[string][]string{}, nodes: map[string]*yaml.Node{}}
	if len(doc.Content) == 0 {
		return file, nil // empty: no keys
	}
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		return fail(top.Line, "want a mapping of flag names to values, e.g. 'relay: HOST:7443'")
	}
	flags := configurable(c)
	extra := extraConfigKeys[c.Command.Name]
	for i := 0; i+1 < len(top.Content); i += 2 {
		key, val := top.Content[i], top.Content[i+1]
		name := key.Value
		if _, dup := file.values[name]; dup || file.nodes[name] != nil {
			return fail(key.Line, "key %q given twice", name)
		}
		if check, ok := extra[name]; ok {
			if err := check(val); err != nil {
				return fail(val.Line, "%s: %v", name, err)
			}
			file.nodes[name] = val
			continue
		}
		j := slices.IndexFunc(flags, func(s settable) bool { return s.name == name })
		if key.Kind != yaml.ScalarNode || j < 0 {
			return fail(key.Line, "unknown key %q: keys are the long flags of 'tunnel %s' (%s)", name, c.Command.Name, keyList(flags, extra))
		}
		f := flags[j]
		var vals []*yaml.Node
		switch {
		case val.Kind == yaml.ScalarNode && val.Tag == "!!null":
			return fail(val.Line, "%s: no value", name)
		case val.Kind == yaml.ScalarNode:
			vals = []*yaml.Node{val}
		case val.Kind == yaml.SequenceNode && f.repeatable:
			vals = val.Content
		case val.Kind == yaml.SequenceNode:
			return fail(val.Line, "%s: a list, but --%s takes one value", name, name)
		default:
			return fail(val.Line, "%s: want a value, not a mapping", name)
		}
		file.keys = append(file.keys, name)
		file.values[name] = []string{}
		for _, v := range vals {
			if v.Kind != yaml.ScalarNode || v.Tag == "!!null" {
				return fail(v.Line, "%s: want a list of values", name)
			}
			if err := cli.Check(f.flag, v.Value); err != nil { // so that a reload refuses what the start would
				return fail(v.Line, "%s: %q: %v", name, v.Value, err)
			}
			file.values[name] = append(file.values[name], v.Value)
		}
	}
	return file, nil
}

func keyList(flags []settable, extra map[string]func(*yaml.Node) error) string {
	var names []string
	for _, f := range flags {
		names = append(names, f.name)
	}
	for k := range extra {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

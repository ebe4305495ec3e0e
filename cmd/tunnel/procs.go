package main

import (
	"slices"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles/procs"
)

// --procs, for the roles that mostly wait on one user (publish, socksd):
// how many cores run their Go code at once. cmd/roles/procs says why one
// while light and all while busy is the default.
func procsFlag() cli.Flag {
	return &cli.StringFlag{Name: "procs", Value: "auto", EnvVars: []string{"TUNNEL_PROCS"},
		Usage: "cores running Go code at once: auto (one while light, all this process may use while busy) or a number; GOMAXPROCS in the environment also fixes it"}
}

// procsSetting reads --procs, if the command has it: ok is false for the
// roles without it (relay), which keep the runtime's default.
func procsSetting(c *cli.Context) (s procs.Setting, ok bool, err error) {
	if c.Command == nil || !slices.ContainsFunc(c.Command.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), "procs") }) {
		return 0, false, nil
	}
	v := c.String("procs")
	if s, err = procs.Parse(v); err != nil {
		return 0, false, usagef("--procs %q: %v", v, err)
	}
	return s, true, nil
}

// applyProcs carries out s, logging each change the governor makes at
// debug level; the returned function stops the governor.
func applyProcs(s procs.Setting, log zerolog.Logger) (stop func()) {
	return procs.Apply(s, func(from, to int) {
		log.Debug().Int("from", from).Int("to", to).Msg("procs")
	})
}

package main

import (
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/cmd/roles"
)

// newLogger builds the logger the global flags ask for. quiet makes the
// default level "error" (tunnel connect: stderr stays quiet unless asked).
func newLogger(c *cli.Context, quiet bool) (zerolog.Logger, error) {
	level := c.String("log-level")
	if quiet && !c.IsSet("log-level") {
		level = "error"
	}
	log, err := roles.NewLogger(level, c.String("log-format"))
	if err != nil {
		return log, usageError{err}
	}
	return log, nil
}

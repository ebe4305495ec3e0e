package main

import (
	"os"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"
)

// newLogger builds the logger the global flags ask for. quiet makes the
// default level "error" (tunnel connect: stderr stays quiet unless asked).
func newLogger(c *cli.Context, quiet bool) (zerolog.Logger, error) {
	levelName := c.String("log-level")
	if quiet && !c.IsSet("log-level") {
		levelName = "error"
	}
	level, err := zerolog.ParseLevel(levelName)
	if err != nil || levelName == "" {
		return zerolog.Nop(), usagef("--log-level %q: want debug, info, warn or error", levelName)
	}
	format := c.String("log-format")
	if format == "" {
		format = "json"
		if isatty.IsTerminal(os.Stderr.Fd()) {
			format = "console"
		}
	}
	var log zerolog.Logger
	switch format {
	case "json":
		zerolog.TimeFieldFormat = time.RFC3339Nano
		log = zerolog.New(os.Stderr)
	case "console":
		log = zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"})
	default:
		return zerolog.Nop(), usagef("--log-format %q: want console or json", format)
	}
	return log.Level(level).With().Timestamp().Logger(), nil
}

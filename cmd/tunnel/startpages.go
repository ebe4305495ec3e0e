package main

import (
	"context"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/cmd/roles/exepages"
)

// releaseStartPages gives back the binary's pages that starting the role
// touched (package exepages) once n has registered with its rendezvous
// node, the last of start-up: the agent and socksd, which run on small
// boards and laptops, call it. The relay and the gateway do not: they are
// sized by what they carry, and the relay's per-device footprint is
// measured against its resident set after start-up. It returns at once;
// what it started ends by itself, or with ctx.
func releaseStartPages(ctx context.Context, n *roles.Node, log zerolog.Logger) {
	go func() {
		if n.WaitRegistered(ctx) != nil {
			return
		}
		released, err := exepages.Release()
		if err != nil {
			log.Debug().Err(err).Msg("could not give back the binary's start-up pages; running on")
			return
		}
		log.Debug().Int64("kib", released>>10).Msg("gave back the binary's start-up pages")
	}()
}

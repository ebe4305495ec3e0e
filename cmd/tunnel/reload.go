package main

import (
	"context"
	"os"
	"os/signal"
	"sync"

	"github.com/rs/zerolog"
)

// onReload calls reload for each reload signal (SIGHUP where there is one)
// until ctx ends or stop is called; stop returns once reload has returned.
// Catching the signal is also what keeps SIGHUP, whose default action is
// to end the process, from killing a daemon.
func onReload(ctx context.Context, reload func()) (stop func()) {
	ch := make(chan os.Signal, 1)
	notifyReload(ch)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				reload()
			}
		}
	})
	return func() {
		signal.Stop(ch)
		cancel()
		wg.Wait()
	}
}

// nothingReloads is the reload of a role whose settings all need a
// restart: one line, so that the signal is seen and does no harm.
func nothingReloads(log zerolog.Logger, role string) {
	log.Info().Msg(role + " reloads nothing on " + reloadSignalName + ": restart it to apply a changed config")
}

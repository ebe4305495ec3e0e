package transport

import (
	"context"
	"sync"

	"github.com/quic-go/quic-go"
)

// ConnListener accepts QUIC connections: a *quic.Listener (a relay's outer
// connections, Relay.Listen) or a *PeerListener (end-to-end ones).
type ConnListener interface {
	Accept(context.Context) (*quic.Conn, error)
	Close() error
}

// ServeConns accepts on ln until ctx ends or ln fails, and runs serve for
// each connection in a goroutine of its own, with a context that ends when
// ServeConns returns; serve must return when it ends. ServeConns owns ln
// and closes it, and returns only after every serve has returned: nil
// when ctx ended, the accept error otherwise.
func ServeConns(ctx context.Context, ln ConnListener, serve func(context.Context, *quic.Conn)) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// A listener whose Accept does not watch ctx is interrupted by closing
	// it.
	context.AfterFunc(ctx, func() { ln.Close() })
	defer func() {
		cancel()
		wg.Wait()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() { serve(ctx, conn) })
	}
}

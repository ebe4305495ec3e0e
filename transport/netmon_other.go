//go:build !linux

package transport

import (
	"context"
	"sync"
)

// watchNetlink has no event source here: the monitor polls
// (netPollEvery) instead.
func watchNetlink(context.Context, *sync.WaitGroup) (<-chan struct{}, error) {
	return nil, nil
}

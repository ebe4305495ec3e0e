package transport

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// blockingListener's Accept blocks until Close, then fails; or fails at
// once with err.
type blockingListener struct {
	err    error
	closed chan struct{}
	once   sync.Once
}

func (l *blockingListener) Accept(ctx context.Context) (*quic.Conn, error) {
	if l.err != nil {
		return nil, l.err
	}
	<-l.closed
	return nil, errors.New("listener closed")
}

func (l *blockingListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func TestServeConns(t *testing.T) {
	serve := func(context.Context, *quic.Conn) { t.Error("served a connection that was never accepted") }

	// ctx ends: Accept is interrupted by closing the listener; nil.
	ln := &blockingListener{closed: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeConns(ctx, ln, serve) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("after ctx ended: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeConns did not return when ctx ended")
	}

	// Accept fails: the error, and the listener closed.
	boom := errors.New("boom")
	ln = &blockingListener{err: boom, closed: make(chan struct{})}
	if err := ServeConns(context.Background(), ln, serve); !errors.Is(err, boom) {
		t.Fatalf("err %v, want the accept error", err)
	}
	select {
	case <-ln.closed:
	default:
		t.Fatal("listener left open")
	}
}

package transport

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// A count that went wrong delays the reader and never stalls it: bytes
// handed for a connection that never takes them end the wait after
// creditGiveUp, and are then forgotten.
func TestCreditWaitGivesUp(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // at one P it does not wait at all
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev, _, conn := modePair(t, ctx, PathRelay)
	r := newRxCredit()
	r.add(dev.Endpoint(), conn)
	r.handed(dev.Endpoint(), 10*creditLimit)
	done := make(chan struct{})
	go func() { r.wait(); r.wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the reader still waits for bytes its connection never takes")
	}
	if out := r.accts[dev.Endpoint()].outstanding(); out > 0 {
		t.Errorf("%d bytes still counted after giving up", out)
	}
}

// An endpoint with more than one connection is not counted: which one
// quic-go hands its packets to is not known here.
func TestCreditSharedEndpoint(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev, _, conn := modePair(t, ctx, PathRelay)
	_, _, other := modePair(t, ctx, PathRelay)
	r := newRxCredit()
	ep := dev.Endpoint()
	r.add(ep, conn)
	r.add(ep, other)
	before := r.accts[ep].handed
	r.handed(ep, 10*creditLimit)
	if a := r.accts[ep]; a.conn != nil || a.handed != before {
		t.Fatalf("account of a shared endpoint: conn %v, %d bytes counted", a.conn, a.handed-before)
	}
	r.remove(ep, other)
	if a := r.accts[ep]; a == nil || a.conn != nil {
		t.Fatalf("after one of two left: %+v, want an account that counts nothing", a)
	}
	r.remove(ep, conn)
	if _, ok := r.accts[ep]; ok {
		t.Fatal("account kept after its last connection left")
	}
	r.wait() // nothing counted: returns at once
}

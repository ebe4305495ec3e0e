package registry

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

func newID(t *testing.T) identity.ID {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k.ID()
}

// redisNode is a RedisPresence for a node named by a fresh ID.
func redisNode(t *testing.T, mr *miniredis.Miniredis, advertise string) *RedisPresence {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1,
		DialTimeout: time.Second, ReadTimeout: time.Second, WriteTimeout: time.Second})
	t.Cleanup(func() { c.Close() })
	return &RedisPresence{Client: c, Node: newID(t), Advertise: advertise, Log: zerolog.Nop()}
}

func TestRedisPresenceAcrossNodes(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := context.Background()
	a := redisNode(t, mr, "127.0.0.1:1001")
	b := redisNode(t, mr, "127.0.0.1:1002")
	dev := newID(t)
	if _, err := b.Get(ctx, dev); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown device: %v, want ErrNotFound", err)
	}
	if err := a.Set(ctx, dev, Record{Endpoint: 42}); err != nil {
		t.Fatal(err)
	}
	// B sees the device homed on A only while A's liveness key is there.
	if _, err := b.Get(ctx, dev); !errors.Is(err, ErrNotFound) {
		t.Fatalf("node without liveness key: %v, want ErrNotFound", err)
	}
	if n, err := a.Refresh(ctx); err != nil || n != 2 {
		t.Fatalf("refresh: %d, %v; want 2 commands", n, err)
	}
	rec, err := b.Get(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Endpoint != 42 || rec.Node != a.Node || rec.Addr != "127.0.0.1:1001" {
		t.Fatalf("record %+v", rec)
	}
	// A answers from memory, as its own.
	if rec, err := a.Get(ctx, dev); err != nil || rec.Node != a.Node {
		t.Fatalf("local get: %+v, %v", rec, err)
	}
}

func TestRedisPresenceTTL(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := context.Background()
	a := redisNode(t, mr, "127.0.0.1:1001")
	b := redisNode(t, mr, "127.0.0.1:1002")
	dev := newID(t)
	a.Set(ctx, dev, Record{Endpoint: 7})
	a.Refresh(ctx)
	mr.FastForward(PresenceTTL / 2)
	a.Refresh(ctx) // the batch refresh extends the TTL
	mr.FastForward(PresenceTTL/2 + time.Second)
	if _, err := b.Get(ctx, dev); err != nil {
		t.Fatalf("refreshed record: %v", err)
	}
	// A stops refreshing (it died): the record expires.
	mr.FastForward(PresenceTTL)
	if _, err := b.Get(ctx, dev); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired record: %v, want ErrNotFound", err)
	}
}

func TestRedisPresenceCompareAndDelete(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := context.Background()
	a := redisNode(t, mr, "127.0.0.1:1001")
	b := redisNode(t, mr, "127.0.0.1:1002")
	dev := newID(t)
	a.Set(ctx, dev, Record{Endpoint: 1})
	a.Refresh(ctx)
	// The device re-homes to B; A then notices its old connection gone.
	b.Set(ctx, dev, Record{Endpoint: 2})
	b.Refresh(ctx)
	if err := a.Delete(ctx, dev, Record{Endpoint: 1}); err != nil {
		t.Fatal(err)
	}
	rec, err := a.Get(ctx, dev)
	if err != nil || rec.Node != b.Node || rec.Endpoint != 2 {
		t.Fatalf("after A's delete: %+v, %v; want B's record", rec, err)
	}
	// B's own delete of a stale record (endpoint 1) leaves its record.
	b.Delete(ctx, dev, Record{Endpoint: 1})
	if _, err := a.Get(ctx, dev); err != nil {
		t.Fatalf("stale delete removed the record: %v", err)
	}
	b.Delete(ctx, dev, Record{Endpoint: 2})
	if _, err := a.Get(ctx, dev); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after B's delete: %v, want ErrNotFound", err)
	}
	if b.Len() != 0 {
		t.Fatalf("B still holds %d", b.Len())
	}
}

func TestRedisPresenceBatchRefresh(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := context.Background()
	a := redisNode(t, mr, "127.0.0.1:1001")
	const n = 2500 // three pipelines
	for i := 0; i < n; i++ {
		if err := a.Set(ctx, newID(t), Record{Endpoint: 1}); err != nil {
			t.Fatal(err)
		}
	}
	mr.FlushAll() // Redis restarted empty
	sent, err := a.Refresh(ctx)
	if err != nil || sent != n+1 {
		t.Fatalf("refresh: %d, %v; want %d", sent, err, n+1)
	}
	if got := len(mr.Keys()); got != n+1 {
		t.Fatalf("%d keys after refresh, want %d", got, n+1)
	}
	if ttl := mr.TTL(a.devKeyAny()); ttl <= 0 || ttl > PresenceTTL {
		t.Fatalf("ttl %v", ttl)
	}
}

// devKeyAny returns the key of one device held here.
func (p *RedisPresence) devKeyAny() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.local {
		return p.devKey(id)
	}
	return ""
}

func TestRedisPresenceDown(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := context.Background()
	a := redisNode(t, mr, "127.0.0.1:1001")
	b := redisNode(t, mr, "127.0.0.1:1002")
	held, other := newID(t), newID(t)
	b.Set(ctx, other, Record{Endpoint: 9})
	b.Refresh(ctx)
	mr.Close()
	// A device registering while Redis is down is held and served here.
	if err := a.Set(ctx, held, Record{Endpoint: 3}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("set with redis down: %v, want ErrUnavailable", err)
	}
	if !a.Down() {
		t.Fatal("not marked down")
	}
	if rec, err := a.Get(ctx, held); err != nil || rec.Endpoint != 3 {
		t.Fatalf("held device: %+v, %v", rec, err)
	}
	if _, err := a.Get(ctx, other); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("other device: %v, want ErrUnavailable", err)
	}
	if _, err := a.Refresh(ctx); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("refresh: %v", err)
	}
	// Redis returns, empty: the next refresh rebuilds A's presence.
	if err := mr.Restart(); err != nil {
		t.Fatal(err)
	}
	mr.FlushAll()
	if _, err := a.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if a.Down() {
		t.Fatal("still down")
	}
	if rec, err := b.Get(ctx, held); err != nil || rec.Node != a.Node {
		t.Fatalf("after recovery: %+v, %v", rec, err)
	}
}

func TestParseValue(t *testing.T) {
	for _, v := range []string{"", "x y", "x y z", newID(t).String() + " a:1 0", newID(t).String() + " a:1 zz"} {
		if _, err := parseValue(v); err == nil {
			t.Errorf("%q parsed", v)
		}
	}
}

func TestRedisPresenceRunRebuilds(t *testing.T) {
	mr := miniredis.RunT(t)
	a := redisNode(t, mr, "127.0.0.1:1001")
	b := redisNode(t, mr, "127.0.0.1:1002")
	dev := newID(t)
	a.Set(context.Background(), dev, Record{Endpoint: 5})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx, time.Hour); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, func() bool { _, err := b.Get(context.Background(), dev); return err == nil })
	// Redis restarts empty between two refreshes: the liveness probe
	// notices and the node rewrites its devices within seconds.
	mr.FlushAll()
	start := time.Now()
	waitFor(t, func() bool { _, err := b.Get(context.Background(), dev); return err == nil })
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("rebuilt after %s", d)
	}
}

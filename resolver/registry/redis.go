package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// Redis presence: several rendezvous nodes share who is online where.
//
// Keys (all under Prefix, default "tunnel:"):
//
//	dev:<device ID>   "<node ID> <node advertise addr> <endpoint>", TTL PresenceTTL
//	node:<node ID>    "<node advertise addr>", TTL PresenceTTL (the node's liveness)
//
// A node writes a device's key when it registers there and refreshes the
// keys of every device it holds, and its own liveness key, in one pipeline
// every RefreshInterval. A device whose node died disappears within
// PresenceTTL; a lookup finding a device whose node's liveness key is gone
// answers offline at once. A record is deleted only if it is still this
// node's (compare-and-delete in Lua): a device that re-homed elsewhere is
// not removed by its old node noticing it left.
//
// Redis is soft state here: each node keeps the devices it holds in memory
// too, answers lookups for them from memory first, and rewrites them all
// when Redis comes back (the next refresh), so a Redis restart loses
// nothing for longer than RefreshInterval.

var errMalformedRecord = errors.New("malformed presence record")

// delIfOurs deletes KEYS[1] only if its value is ARGV[1]. It becomes a
// redis.Script where it runs, not at package init: NewScript hashes it,
// work (and code paged in) that every role would pay at start and only a
// node with Redis needs.
const delIfOurs = `if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`

// RedisPresence stores presence in Redis for nodes that share it. Node and
// Advertise name this node: Get returns them for devices homed here, and
// other nodes' records carry theirs (Record.Node, Record.Addr). Run must
// be running: it refreshes the records, and rewrites them all when Redis
// is back after an outage.
type RedisPresence struct {
	Client    redis.UniversalClient
	Node      identity.ID
	Advertise string // HOST:PORT other nodes and clients reach this node at
	Prefix    string // key prefix; "tunnel:" if empty
	TTL       time.Duration
	Log       zerolog.Logger

	mu      sync.Mutex
	local   map[identity.ID]Record // devices homed on this node
	down    bool                   // the last Redis operation failed
	failed  time.Time              // when it failed
	lastLog time.Time              // last "registry unavailable" line
}

// NewRedisPresence connects to the Redis cfg names. Its errors name
// the URL redacted (RedactURL), never with its password.
func NewRedisPresence(cfg RedisConfig, node identity.ID, advertise string, log zerolog.Logger) (*RedisPresence, error) {
	opt, err := cfg.options()
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &RedisPresence{Client: redis.NewClient(opt), Node: node, Advertise: advertise, Log: log}, nil
}

func (p *RedisPresence) prefix() string {
	if p.Prefix == "" {
		return "tunnel:"
	}
	return p.Prefix
}

func (p *RedisPresence) ttl() time.Duration {
	if p.TTL <= 0 {
		return PresenceTTL
	}
	return p.TTL
}

func (p *RedisPresence) devKey(id identity.ID) string  { return p.prefix() + "dev:" + id.String() }
func (p *RedisPresence) nodeKey(id identity.ID) string { return p.prefix() + "node:" + id.String() }

// value is the stored form of a record homed on this node.
func (p *RedisPresence) value(rec Record) string {
	return p.Node.String() + " " + p.Advertise + " " + strconv.FormatUint(uint64(rec.Endpoint), 16)
}

func parseValue(v string) (Record, error) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return Record{}, fmt.Errorf("presence record %q: %w", v, errMalformedRecord)
	}
	node, err := identity.ParseID(f[0])
	if err != nil {
		return Record{}, fmt.Errorf("presence record %q: %w", v, err)
	}
	ep, err := strconv.ParseUint(f[2], 16, 64)
	if err != nil || ep == 0 {
		return Record{}, fmt.Errorf("presence record %q: %w", v, errMalformedRecord)
	}
	return Record{Endpoint: transport.Endpoint(ep), Node: node, Addr: f[1]}, nil
}

// outcome notes whether Redis answered, logs a failure at most once per
// RefreshInterval, and wraps it in ErrUnavailable.
func (p *RedisPresence) outcome(op string, err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil || errors.Is(err, redis.Nil) {
		if p.down {
			p.down = false
			p.Log.Info().Msg("registry (redis) reachable again")
		}
		return err
	}
	if !p.down || time.Since(p.lastLog) >= RefreshInterval {
		p.Log.Error().Err(err).Str("op", op).Msg("registry (redis) unavailable; serving devices held here only")
		p.lastLog = time.Now()
	}
	p.down = true
	p.failed = time.Now()
	return fmt.Errorf("%w: registry: %w", ErrUnavailable, err)
}

// failingFast reports whether Redis failed less than failFast ago, so
// that Set and Get need not ask it; the caller holds p.mu.
func (p *RedisPresence) failingFast() bool {
	return p.down && time.Since(p.failed) < failFast
}

// Down reports whether the last Redis operation failed.
func (p *RedisPresence) Down() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

// Set implements Presence. The record is kept here even when Redis fails
// (the error then wraps ErrUnavailable): the device is served from
// this node, and the next refresh writes it.
func (p *RedisPresence) Set(ctx context.Context, id identity.ID, rec Record) error {
	rec.Node, rec.Addr = p.Node, p.Advertise
	p.mu.Lock()
	if p.local == nil {
		p.local = make(map[identity.ID]Record)
	}
	p.local[id] = rec
	down := p.failingFast()
	p.mu.Unlock()
	if down {
		// Redis failed within the last second: do not wait on it again;
		// Run writes every device held when it is back.
		return fmt.Errorf("%w: registry down", ErrUnavailable)
	}
	return p.outcome("set", p.Client.Set(ctx, p.devKey(id), p.value(rec), p.ttl()).Err())
}

// Delete implements Presence: it removes the record here, and in Redis
// only if the stored record is still this one.
func (p *RedisPresence) Delete(ctx context.Context, id identity.ID, rec Record) error {
	rec.Node, rec.Addr = p.Node, p.Advertise
	p.mu.Lock()
	if cur, ok := p.local[id]; ok && cur == rec {
		delete(p.local, id)
	}
	p.mu.Unlock()
	err := redis.NewScript(delIfOurs).Run(ctx, p.Client, []string{p.devKey(id)}, p.value(rec)).Err()
	return p.outcome("delete", err)
}

// Get implements Presence: devices held here first, then Redis. A record
// whose node's liveness key is gone is offline.
func (p *RedisPresence) Get(ctx context.Context, id identity.ID) (Record, error) {
	p.mu.Lock()
	rec, ok := p.local[id]
	down := p.failingFast()
	p.mu.Unlock()
	if ok {
		return rec, nil
	}
	if down {
		// Fail fast while Redis is known down (a blackholed Redis would
		// make every lookup wait for its timeouts).
		return Record{}, fmt.Errorf("%w: registry down", ErrUnavailable)
	}
	v, err := p.Client.Get(ctx, p.devKey(id)).Result()
	if err := p.outcome("get", err); err != nil {
		if errors.Is(err, redis.Nil) {
			return Record{}, ErrNotFound
		}
		return Record{}, err
	}
	rec, err = parseValue(v)
	if err != nil {
		return Record{}, err
	}
	if rec.Node == p.Node {
		// Ours in Redis but not held here: a leftover of this node's
		// previous run. The device is not here.
		return Record{}, ErrNotFound
	}
	n, err := p.Client.Exists(ctx, p.nodeKey(rec.Node)).Result()
	if err := p.outcome("get", err); err != nil {
		return Record{}, err
	}
	if n == 0 {
		return Record{}, ErrNotFound
	}
	return rec, nil
}

// Len returns the number of devices held by this node.
func (p *RedisPresence) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.local)
}

// Refresh rewrites this node's liveness key and the keys of every device
// it holds, in pipelines of at most refreshBatch commands. It returns the
// number of commands sent.
func (p *RedisPresence) Refresh(ctx context.Context) (int, error) {
	p.mu.Lock()
	keys := make([]string, 0, len(p.local))
	vals := make([]string, 0, len(p.local))
	for id, rec := range p.local {
		keys = append(keys, p.devKey(id))
		vals = append(vals, p.value(rec))
	}
	p.mu.Unlock()
	ttl := p.ttl()
	sent := 0
	pipe := p.Client.Pipeline()
	pipe.Set(ctx, p.nodeKey(p.Node), p.Advertise, ttl)
	for i := range keys {
		pipe.Set(ctx, keys[i], vals[i], ttl)
		if pipe.Len() >= refreshBatch {
			n := pipe.Len()
			if _, err := pipe.Exec(ctx); err != nil {
				return sent, p.outcome("refresh", err)
			}
			sent += n
		}
	}
	if n := pipe.Len(); n > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return sent, p.outcome("refresh", err)
		}
		sent += n
	}
	return sent, p.outcome("refresh", nil)
}

// refreshBatch bounds one refresh pipeline.
const refreshBatch = 1000

// Run refreshes every interval (RefreshInterval if zero), and at once
// when Redis answers again after failing, until ctx ends; then it removes
// this node's liveness key and closes the client.
func (p *RedisPresence) Run(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = RefreshInterval
	}
	_, _ = p.Refresh(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	// Every second, check this node's liveness key (one EXISTS): Redis
	// that was down, or restarted empty between two refreshes, gets this
	// node's presence back within a second or so.
	probe := time.NewTicker(livenessProbe)
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), redisTimeout)
			_ = p.Client.Del(dctx, p.nodeKey(p.Node)).Err()
			cancel()
			return
		case <-t.C:
			_, _ = p.Refresh(ctx)
		case <-probe.C:
			if p.Down() || !p.alive(ctx) {
				_, _ = p.Refresh(ctx)
			}
		}
	}
}

// alive reports whether this node's liveness key is in Redis.
func (p *RedisPresence) alive(ctx context.Context) bool {
	n, err := p.Client.Exists(ctx, p.nodeKey(p.Node)).Result()
	return p.outcome("probe", err) == nil && n == 1
}

// Close closes the Redis client.
func (p *RedisPresence) Close() error { return p.Client.Close() }

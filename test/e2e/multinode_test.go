//go:build linux

package e2e

// Two rendezvous nodes sharing presence in a real redis-server: a client
// on node B reaches a device homed on node A (redirect); node A killed,
// the device re-homes to B; Redis restarted, presence is rebuilt.

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// requireRedis returns the path of redis-server, skipping (failing under
// CI) without it.
func requireRedis(t *testing.T) string {
	t.Helper()
	p, err := lookPath("redis-server")
	if err != nil {
		msg := "redis-server not installed (Debian package redis-server; as root, `make deps` installs it)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

// startRedis runs redis-server on port, loopback only, without persistence.
func startRedis(t *testing.T, bin, name string, port int) *proc {
	t.Helper()
	p := startCmd(t, name, nil, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes")
	if err := waitTCP(addr(port), 10*time.Second, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// redisHas waits until key exists in the Redis at port.
func redisHas(port int, key string, timeout time.Duration) (time.Duration, error) {
	rc := redis.NewClient(&redis.Options{Addr: addr(port)})
	defer rc.Close()
	start := time.Now()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		n, err := rc.Exists(ctx, key).Result()
		cancel()
		if err == nil && n == 1 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("redis key %s not there after %s (last error %v)", key, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestMultiNodeRedis(t *testing.T) {
	redisBin := requireRedis(t)
	e := getEnv(t)
	redisPort := freePort(t, "tcp")
	redis1 := startRedis(t, redisBin, "redis", redisPort)
	registry := fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)

	homeA, homeB := t.TempDir(), t.TempDir()
	portA, portB := freePort(t, "udp"), freePort(t, "udp")
	idA, idB := tunnelID(t, homeA), tunnelID(t, homeB)
	relayA := idA + "@" + addr(portA)
	relayB := idB + "@" + addr(portB)
	startNodeProc := func(name, home string, port int) *proc {
		p := startTunnel(t, name, home, nil, "relay", "--listen", addr(port),
			"--registry", registry, "--advertise", addr(port))
		if !p.waitLog("relay listening", 1, 10*time.Second) {
			t.Fatalf("%s did not start", name)
		}
		return p
	}
	nodeA := startNodeProc("relay-a", homeA, portA)

	// The device knows both nodes; only A is up, so it homes on A.
	dev, devID := publishSSH(t, e, "publish", relayA+","+relayB)
	if !dev.waitLog("registered with relay", 1, 15*time.Second) {
		t.Fatal("device did not register")
	}
	devKey := "tunnel:dev:" + devID
	if _, err := redisHas(redisPort, devKey, 15*time.Second); err != nil {
		t.Fatal(err)
	}
	startNodeProc("relay-b", homeB, portB)

	socksB := addr(freePort(t, "tcp"))
	sd := startTunnel(t, "socksd-b", t.TempDir(), nil, "socksd", "--relay", relayB, "--listen", socksB)
	if err := waitTCP(socksB, 15*time.Second, sd); err != nil {
		t.Fatal(err)
	}
	host := devID + ".tunnel"
	took, err := waitReachable(socksB, host, 22, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("client on node B reached the device homed on node A after %s", took.Round(time.Millisecond))
	if err := e.sshd.checkEcho(30*time.Second, nil, ncProxy(socksB), host, "via-b-to-a"); err != nil {
		t.Fatal(err)
	}

	// Node A dies: the device re-homes to B.
	nodeA.kill9()
	killed := time.Now()
	if !dev.waitLog("registered with relay", 2, 30*time.Second) {
		t.Fatal("device did not re-register after node A died")
	}
	rehomed := time.Since(killed)
	took, err = waitReachable(socksB, host, 22, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("node A killed: device re-homed to B after %s, reachable again %s after the kill",
		rehomed.Round(time.Millisecond), (rehomed + took).Round(time.Millisecond))
	if err := e.sshd.checkEcho(30*time.Second, nil, ncProxy(socksB), host, "after-rehome"); err != nil {
		t.Fatal(err)
	}

	// Node A comes back (empty); a client there is redirected to B.
	nodeA2 := startNodeProc("relay-a2", homeA, portA)
	socksA := addr(freePort(t, "tcp"))
	sdA := startTunnel(t, "socksd-a", t.TempDir(), nil, "socksd", "--relay", relayA, "--listen", socksA)
	if err := waitTCP(socksA, 15*time.Second, sdA); err != nil {
		t.Fatal(err)
	}
	if _, err := waitReachable(socksA, host, 22, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// Redis restarts empty: the nodes rewrite what they hold.
	if _, _, err := redis1.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Redis down: node B still serves the device it holds; node A2
	// answers a lookup it cannot make with host unreachable, fast, and
	// logs the outage once, not once per lookup.
	if err := e.sshd.checkEcho(30*time.Second, nil, ncProxy(socksB), host, "redis-down"); err != nil {
		t.Fatal(err)
	}
	unknown := tunnelID(t, t.TempDir())
	for range 5 {
		start := time.Now()
		rep, err := socksConnect(socksA, unknown+".tunnel", 22)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Code != repHostUnreachable || time.Since(start) > 5*time.Second {
			t.Fatalf("unknown device with redis down: reply %s after %s, want host unreachable", replyName(rep.Code), time.Since(start))
		}
	}
	const downMsg = "registry (redis) unavailable"
	if !nodeA2.waitLog(downMsg, 1, 5*time.Second) {
		t.Fatal("node A2 did not log the registry outage")
	}
	if n := nodeA2.count(downMsg); n > 2 {
		t.Errorf("node A2 logged the outage %d times in a few seconds, want once per interval", n)
	}
	t.Logf("redis down: held device served by B; unknown device answered host unreachable by A2; outage logged %d time(s)", nodeA2.count(downMsg))
	startRedis(t, redisBin, "redis-restarted", redisPort)
	restarted := time.Now()
	if _, err := redisHas(redisPort, devKey, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("redis restarted: device presence rebuilt after %s", time.Since(restarted).Round(time.Millisecond))
	socksA2 := addr(freePort(t, "tcp"))
	sdA2 := startTunnel(t, "socksd-a-after-redis", t.TempDir(), nil, "socksd", "--relay", relayA, "--listen", socksA2)
	if err := waitTCP(socksA2, 15*time.Second, sdA2); err != nil {
		t.Fatal(err)
	}
	took, err = waitReachable(socksA2, host, 22, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the redis restart: a new client on node A reached the device (homed on B) in %s", took.Round(time.Millisecond))
	if err := e.sshd.checkEcho(30*time.Second, nil, ncProxy(socksA2), host, "after-redis-restart"); err != nil {
		t.Fatal(err)
	}
}

// Command load connects many simulated devices from one process to one or
// more rendezvous nodes and reports how long they took to register, and,
// given the nodes' Redis and process IDs, the registry operations per
// second and the nodes' memory per device.
//
//	go run ./test/load -relay ID@127.0.0.1:7443 -devices 1000
//	go run ./test/load -relay A,B -split -devices 10000 \
//	    -redis redis://127.0.0.1:6379/0 -relay-pids PID_A,PID_B
//
// Each device is a node (its own UDP socket) registered as a device,
// started as `tunnel publish` starts one (cmd/roles.StartNode). With
// -split, device i homes on relay i mod len(relays); without it each
// device is given every relay and homes on the one answering first.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/cmd/roles"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
)

func main() {
	relays := flag.String("relay", "127.0.0.1:7443", "rendezvous nodes, comma-separated (HOST:PORT or ID@HOST:PORT)")
	devices := flag.Int("devices", 1000, "simulated devices")
	split := flag.Bool("split", false, "home device i on relay i mod len(relays) instead of letting each pick")
	rate := flag.Int("rate", 500, "devices started per second")
	redisURL := flag.String("redis", "", "the nodes' registry (redis://HOST:PORT/DB), to count its operations")
	pids := flag.String("relay-pids", "", "the nodes' process IDs, comma-separated, to read their RSS")
	hold := flag.Duration("hold", 30*time.Second, "how long to keep the devices registered after the last one, measuring")
	flag.Parse()
	if err := run(*relays, *devices, *split, *rate, *redisURL, *pids, *hold); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(relayList string, n int, split bool, rate int, redisURL, pidList string, hold time.Duration) error {
	var ras []resolver.RelayAddr
	for _, s := range strings.Split(relayList, ",") {
		ra, err := resolver.ParseRelayAddr(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		ras = append(ras, ra)
	}
	var rc *redis.Client
	if redisURL != "" {
		opt, err := redis.ParseURL(redisURL)
		if err != nil {
			return err
		}
		rc = redis.NewClient(opt)
		defer rc.Close()
	}
	var relayPIDs []int
	if pidList != "" {
		for _, s := range strings.Split(pidList, ",") {
			pid, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil {
				return fmt.Errorf("-relay-pids: %w", err)
			}
			relayPIDs = append(relayPIDs, pid)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rss0 := rssAll(relayPIDs)
	cmds0 := redisCommands(ctx, rc)
	var registered, registrations atomic.Int64
	var regAtHold atomic.Int64
	allDone := make(chan struct{})
	var once sync.Once
	var wg sync.WaitGroup
	var nodes []*roles.Node
	runCtx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		wg.Wait()
		for _, nd := range nodes {
			nd.Close()
		}
	}()
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(max(rate, 1)))
	defer tick.Stop()
	for i := range n {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		key, err := identity.Generate()
		if err != nil {
			return err
		}
		home := ras
		if split || len(ras) == 1 {
			home = ras[i%len(ras) : i%len(ras)+1]
		}
		nd, err := roles.StartNode(runCtx, roles.NodeConfig{Key: key, Listen: "127.0.0.1:0", Relays: home,
			Publishes: true, Log: zerolog.Nop()})
		if err != nil {
			return fmt.Errorf("device %d: %w", i, err)
		}
		nodes = append(nodes, nd)
	}
	// Count registrations, re-registrations after a lost connection
	// included.
	wg.Go(func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-runCtx.Done():
				return
			case <-t.C:
			}
			var regs, firsts int64
			for _, nd := range nodes {
				if r := nd.Resolver.Registrations(); r > 0 {
					regs += int64(r)
					firsts++
				}
			}
			registrations.Store(regs)
			registered.Store(firsts)
			if firsts == int64(n) {
				once.Do(func() { close(allDone) })
			}
		}
	})
	startedIn := time.Since(start)
	fmt.Fprintf(os.Stderr, "load: %d devices started in %s, waiting for registrations\n", n, startedIn.Round(time.Millisecond))
	select {
	case <-allDone:
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("only %d of %d devices registered within 2 min of the last start", registered.Load(), n)
	case <-ctx.Done():
		return ctx.Err()
	}
	regTime := time.Since(start)
	cmdsReg := redisCommands(ctx, rc)
	fmt.Printf("devices: %d across %d relay(s) (%s)\n", n, len(ras), map[bool]string{true: "split", false: "each picks"}[split || len(ras) == 1])
	fmt.Printf("registration: all %d registered %s after the first start (start rate %d/s; %.0f registrations/s)\n",
		n, regTime.Round(time.Millisecond), rate, float64(n)/regTime.Seconds())
	if rc != nil && cmds0 >= 0 {
		fmt.Printf("registry during registration: %d redis commands, %.0f ops/s\n", cmdsReg-cmds0, float64(cmdsReg-cmds0)/regTime.Seconds())
	}
	// Steady state: the nodes refresh what they hold.
	regAtHold.Store(registrations.Load())
	t0 := time.Now()
	select {
	case <-time.After(hold):
	case <-ctx.Done():
		return ctx.Err()
	}
	if rc != nil && cmds0 >= 0 {
		cmds1 := redisCommands(ctx, rc)
		el := time.Since(t0)
		fmt.Printf("registry steady state: %d redis commands in %s, %.0f ops/s (refreshes and probes); keys: %d\n",
			cmds1-cmdsReg, el.Round(time.Second), float64(cmds1-cmdsReg)/el.Seconds(), redisKeys(ctx, rc))
	}
	if len(relayPIDs) > 0 {
		rss1 := rssAll(relayPIDs)
		var tot0, tot1 int64
		for i, pid := range relayPIDs {
			tot0 += rss0[i]
			tot1 += rss1[i]
			fmt.Printf("relay pid %d: RSS %.1f MiB -> %.1f MiB\n", pid, float64(rss0[i])/(1<<20), float64(rss1[i])/(1<<20))
		}
		fmt.Printf("relay memory per device: %.1f KiB ((RSS after - RSS before) / devices, all relays)\n",
			float64(tot1-tot0)/1024/float64(n))
	}
	fmt.Printf("re-registrations (a device's relay connection ended and it redialed): %d during the ramp, %d during the %s hold\n",
		regAtHold.Load()-int64(n), registrations.Load()-regAtHold.Load(), hold)
	return nil
}

// redisCommands returns Redis's total_commands_processed, or -1.
func redisCommands(ctx context.Context, rc *redis.Client) int64 {
	if rc == nil {
		return -1
	}
	info, err := rc.Info(ctx, "stats").Result()
	if err != nil {
		return -1
	}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "total_commands_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return -1
}

func redisKeys(ctx context.Context, rc *redis.Client) int64 {
	n, _ := rc.DBSize(ctx).Result()
	return n
}

// rssAll returns each process's resident set in bytes (0 if unreadable).
func rssAll(pids []int) []int64 {
	out := make([]int64, len(pids))
	for i, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					out[i] = kb * 1024
				}
			}
		}
	}
	return out
}

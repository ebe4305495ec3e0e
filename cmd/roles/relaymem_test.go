package roles

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver"
)

// What one idle registered device costs a relay: the Go heap it keeps
// live and the goroutine stacks, after collection, so that neither timing
// nor GC pacing moves the figure. The devices run in a child process (this
// test binary again) so that the heap measured is the relay's alone.
// Devices hold their registrations on leases (transport/lease.go), with no
// connection open. Measured on amd64 with 100 devices: 2.7–3.3 KiB heap
// (the registration, its routes and its presence record) + ~2.2 KiB of
// stacks the pool keeps (4.8 with -race, which the total bound then
// skips), and no goroutine per device. With a QUIC connection per device
// it was 37.7 KiB heap (quic-go's and crypto/tls's state) + 12 KiB stacks
// and 3 goroutines, which these bounds fail; they leave room for Go
// updates, not for a connection or a goroutine per idle device.
const (
	idleDevicesN           = 100
	maxRelayHeapPerDevice  = 8 << 10
	maxRelayBytesPerDevice = 16 << 10 // heap + stacks, without -race
	maxRelayGoroutinesPer  = 0
	relayGoroutinesOnce    = 10                         // started once, by the first device (timers, quic-go's)
	idleDevicesEnv         = "TUNNEL_TEST_IDLE_DEVICES" // "N ID@HOST:PORT": be the child
)

func TestRelayMemoryPerIdleDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("registers 100 devices")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	r, err := StartRelay(ctx, RelayConfig{Key: key, Listen: "127.0.0.1:0", Log: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	before := relayMem()

	child := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestIdleDevicesChild$", "-test.count=1")
	child.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s", idleDevicesEnv, idleDevicesN, r.Addr()))
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child stops its devices and exits
		if err := child.Wait(); err != nil {
			t.Errorf("devices' process: %v", err)
		}
	}()
	registered := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "registered" {
				registered <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		registered <- fmt.Errorf("devices' process ended before registering: %v", sc.Err())
	}()
	select {
	case err := <-registered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("devices not registered within 2 minutes")
	}
	if n := r.Attached(); n != idleDevicesN {
		t.Fatalf("%d devices attached to the relay, want %d", n, idleDevicesN)
	}
	// The registration connections' goroutines end once the devices
	// close them; wait for them rather than for a fixed time.
	var after relayMemFigure
	for deadline := time.Now().Add(20 * time.Second); ; {
		after = relayMem()
		if after.goroutines-before.goroutines <= maxRelayGoroutinesPer*idleDevicesN+relayGoroutinesOnce || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	heap := float64(after.heap-before.heap) / idleDevicesN
	stacks := float64(after.stacks-before.stacks) / idleDevicesN
	goroutines := after.goroutines - before.goroutines
	t.Logf("relay per idle device (%d devices): heap %.1f KiB + stacks %.1f KiB = %.1f KiB (bounds %d KiB heap, %d KiB in all), %d goroutines more (bound %d per device + %d)",
		idleDevicesN, heap/1024, stacks/1024, (heap+stacks)/1024, maxRelayHeapPerDevice>>10, maxRelayBytesPerDevice>>10, goroutines, maxRelayGoroutinesPer, relayGoroutinesOnce)
	if heap > maxRelayHeapPerDevice {
		t.Errorf("relay keeps %.1f KiB of heap per idle device, more than %d KiB", heap/1024, maxRelayHeapPerDevice>>10)
	}
	if !raceEnabled && heap+stacks > maxRelayBytesPerDevice {
		t.Errorf("relay keeps %.1f KiB per idle device, more than %d KiB", (heap+stacks)/1024, maxRelayBytesPerDevice>>10)
	}
	if goroutines > maxRelayGoroutinesPer*idleDevicesN+relayGoroutinesOnce {
		t.Errorf("relay runs %d more goroutines with %d idle devices, more than %d per device + %d", goroutines, idleDevicesN, maxRelayGoroutinesPer, relayGoroutinesOnce)
	}
}

type relayMemFigure struct {
	heap, stacks int64
	goroutines   int
}

// relayMem collects until the figures stop moving (stacks shrink by half
// per collection) and reads live heap, stacks and goroutines.
func relayMem() relayMemFigure {
	var m runtime.MemStats
	var last relayMemFigure
	for range 8 {
		runtime.GC()
		runtime.ReadMemStats(&m)
		f := relayMemFigure{heap: int64(m.HeapAlloc), stacks: int64(m.StackInuse), goroutines: runtime.NumGoroutine()}
		if f == last {
			break
		}
		last = f
	}
	return last
}

// TestIdleDevicesChild is the devices' side of
// TestRelayMemoryPerIdleDevice, in its own process: it registers N devices
// at the relay, says "registered", and holds them idle until its stdin
// closes.
func TestIdleDevicesChild(t *testing.T) {
	spec := os.Getenv(idleDevicesEnv)
	if spec == "" {
		t.Skip("run by TestRelayMemoryPerIdleDevice")
	}
	var nText, addr string
	if _, err := fmt.Sscan(spec, &nText, &addr); err != nil {
		t.Fatalf("%s=%q: %v", idleDevicesEnv, spec, err)
	}
	n, err := strconv.Atoi(nText)
	if err != nil {
		t.Fatalf("%s=%q: %v", idleDevicesEnv, spec, err)
	}
	ra, err := resolver.ParseRelayAddr(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var nodes []*Node
	defer func() {
		for _, node := range nodes {
			node.Close()
		}
	}()
	for range n {
		key, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		node, err := StartNode(ctx, NodeConfig{Key: key, Listen: "127.0.0.1:0", Relays: []resolver.RelayAddr{ra}, Publishes: true, Log: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
	}
	for _, node := range nodes {
		if err := node.WaitRegistered(ctx); err != nil {
			t.Fatal(err)
		}
	}
	fmt.Println("registered")
	_, _ = io.Copy(io.Discard, os.Stdin)
}

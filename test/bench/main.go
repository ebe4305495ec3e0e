//go:build linux

// Command bench measures tunnel against `ssh -D` and raw TCP, side by side
// in one run, all on 127.0.0.1, and prints one markdown table:
//
//	go run ./test/bench          (as root; `make bench` runs it after the Go benchmarks)
//
// It builds bin/tunnel and starts: a sink, a source and an echo server (in
// this process); a throwaway sshd with a user and key of its own, and
// `ssh -D` to it (default cipher); a `tunnel relay`; a device (`tunnel
// publish`) publishing the three servers; a socksd with --path auto (direct
// once punched) and one with --path relay, both using that relay; the
// quic-go pipe, the library's ceiling with the same TCP legs (quicpipe.go);
// and, for small boards, a second device and pipe with GOMAXPROCS=1
// (smallboard.go). Then:
//
//  1. bulk throughput up and down, nc through each SOCKS proxy (plain nc for
//     raw TCP and the pipe), rounds alternating between the paths; then one
//     profiled upload and download per path for the CPU by layer (layers.go);
//  2. connect latency: SOCKS CONNECT + 1-byte echo, samples interleaved,
//     back to back and then each after an idle gap;
//  3. 1,000 concurrent 64 KiB echo streams through one socksd; then round
//     trips to a second device beside the first one's download
//     (neighbour.go);
//  4. relay memory per idle device (devices run in this process) and per
//     idle relayed stream;
//  5. CPU seconds per GB moved, from /proc, in the bulk runs;
//  6. footprint: RSS of a fresh idle agent (two ports, one idle client
//     connection) and of a fresh idle socksd, then their wake-ups and CPU
//     time while they stay idle.
//
// Figures are only reported, never asserted: the targets are printed next
// to them with ✓ or ✗. Needs root (useradd, sshd), OpenSSH and OpenBSD nc
// (`make deps`). Every child is killed on exit, error, timeout or ctrl-C.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tunnel-dev/tunnel/cmd/roles"
)

type config struct {
	rounds      int
	bulkBytes   int64
	bulkCap     time.Duration
	samples     int
	warmup      int
	idleSamples int
	idleGap     time.Duration
	streams     int
	streamBytes int
	devices     int
	idleStreams int
	timeout     time.Duration
	bin         string
	keep        bool
	only        partSet
	against     string // -against: the build to compare -bin with (against.go)
	pairs       int
}

var cfg config

func main() {
	if len(os.Args) > 1 && os.Args[1] == "quicpipe" {
		os.Exit(quicPipeMain(os.Args[2:])) // the ceiling's processes (quicpipe.go)
	}
	flag.IntVar(&cfg.rounds, "rounds", 3, "bulk rounds (each runs every path up and down, alternating)")
	bulkMiB := flag.Int64("bulk-mib", 1024, "bytes per bulk transfer, in MiB")
	flag.DurationVar(&cfg.bulkCap, "bulk-max", 5*time.Second, "time cap of one bulk transfer")
	flag.IntVar(&cfg.samples, "samples", 300, "connect+echo samples per path")
	flag.IntVar(&cfg.warmup, "warmup", 30, "connect+echo warm-up samples per path")
	flag.IntVar(&cfg.idleSamples, "idle-samples", 100, "connect+echo samples per path after an idle gap each (0: none)")
	flag.DurationVar(&cfg.idleGap, "idle-gap", 20*time.Millisecond, "the idle gap before each of those samples")
	flag.IntVar(&cfg.streams, "streams", 1000, "concurrent streams")
	streamKiB := flag.Int("stream-kib", 64, "bytes echoed per concurrent stream, in KiB")
	flag.IntVar(&cfg.devices, "devices", 300, "idle devices registered at the relay")
	flag.IntVar(&cfg.idleStreams, "idle-streams", 200, "idle relayed streams held open")
	flag.DurationVar(&cfg.timeout, "timeout", 15*time.Minute, "give up (and clean up) after this long")
	flag.StringVar(&cfg.bin, "bin", "", "tunnel binary to use instead of building bin/tunnel")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (logs, homes) at the end")
	flag.StringVar(&cfg.against, "against", "", "compare the tunnel (-bin, or the working tree) side by side with this binary or git revision, bulk transfers only (against.go)")
	flag.IntVar(&cfg.pairs, "pairs", 12, "with -against: pairs of transfers per path and direction")
	only := flag.String("only", "", "run only these parts, comma-separated, with the setup they need, and print their rows: "+strings.Join(benchParts, ","))
	flag.Parse()
	var err error
	if cfg.only, err = parseParts(*only); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	if cfg.against != "" && *only != "" {
		fmt.Fprintf(os.Stderr, "bench: %v\n", errAgainstOnly)
		os.Exit(2)
	}
	cfg.bulkBytes = *bulkMiB << 20
	cfg.streamBytes = *streamKiB << 10
	if cfg.rounds < 1 || cfg.samples < 1 || cfg.idleSamples < 0 || cfg.idleGap < 0 || cfg.bulkBytes <= 0 || cfg.streams < 1 || cfg.devices < 1 || cfg.idleStreams < 1 || cfg.pairs < 1 {
		fmt.Fprintln(os.Stderr, "bench: counts must be positive")
		os.Exit(2)
	}
	if *footprintSettle < 0 || *footprintWindow <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -footprint-settle must not be negative, and -footprint-window must be positive")
		os.Exit(2)
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		fmt.Fprintf(os.Stderr, "\nbench: %v: stopping every process it started\n", s)
		cleanup(true)
		os.Exit(130)
	}()
	watchdog := time.AfterFunc(cfg.timeout, func() {
		fmt.Fprintf(os.Stderr, "bench: FAIL: not done after -timeout %s; stopping every process it started\n", cfg.timeout)
		cleanup(true)
		os.Exit(1)
	})
	defer watchdog.Stop()

	err = run()
	cleanup(err != nil)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: FAIL: %v\n", err)
		os.Exit(1)
	}
}

// ---- cleanup ----

var (
	exitMu    sync.Mutex
	exitFuncs []func()
	cleaned   bool
	workDir   string
)

// atExit registers f to run at cleanup, newest first, after the children
// are stopped.
func atExit(f func()) {
	exitMu.Lock()
	exitFuncs = append(exitFuncs, f)
	exitMu.Unlock()
}

// stopping is set when cleanup begins: the measurements still running
// then fail by the dozen, and saying so would bury the reason.
var stopping atomic.Bool

func cleanup(failed bool) {
	stopping.Store(true)
	exitMu.Lock()
	defer exitMu.Unlock()
	if cleaned {
		return
	}
	cleaned = true
	stopChildren()
	for i := len(exitFuncs) - 1; i >= 0; i-- {
		exitFuncs[i]()
	}
	if workDir == "" {
		return
	}
	if failed || cfg.keep {
		fmt.Fprintf(os.Stderr, "bench: logs and homes kept in %s\n", workDir)
		return
	}
	_ = os.RemoveAll(workDir)
}

func progress(format string, args ...any) {
	if stopping.Load() {
		return
	}
	fmt.Fprintf(os.Stderr, "bench %s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// ---- setup ----

// bench is the running setup.
type bench struct {
	bin       string
	binDesc   string // where bin came from, for the -against table
	work      string
	srv       *servers
	ssh       *sshFixture
	sshD      *proc
	relay     *proc
	relayID   string
	relayAddr string
	device    *proc
	deviceID  string
	sDirect   *proc
	sRelayed  *proc
	direct    *target // the tunnel's two paths, also in targets
	relayed   *target
	targets   []*target // raw, ssh -D, direct, relayed, then quic-go pipe and smallboard.go's

	pipe       *quicPipe // the ceiling (quicpipe.go)
	pipeTarget *target
	board      smallBoard // GOMAXPROCS=1 (smallboard.go)
	extra      []*proc    // further daemons that must stay up
}

func run() error {
	began := time.Now()
	if err := preflight(cfg.against == ""); err != nil {
		return err
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	b := &bench{bin: cfg.bin}
	if b.bin != "" {
		if b.bin, err = filepath.Abs(b.bin); err != nil {
			return err
		}
		if _, err := os.Stat(b.bin); err != nil {
			return fmt.Errorf("-bin: %w", err)
		}
		b.binDesc = cfg.bin
	} else {
		b.bin = filepath.Join(root, "bin", "tunnel")
		progress("building %s", b.bin)
		// As `make build`: static, and with its tags, which change the
		// footprint rows (BENCHMARKS.md, Footprint).
		cmd := exec.Command("go", "build", "-tags", "nethttpomithttp2", "-o", b.bin, "./cmd/tunnel")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build ./cmd/tunnel: %v\n%s", err, out)
		}
	}
	if b.work, err = os.MkdirTemp("", "tunnel-bench-"); err != nil {
		return err
	}
	workDir = b.work
	info := collectHost(root)
	if b.binDesc == "" {
		b.binDesc = "the working tree (" + orDash(info.rev) + ")"
	}
	if cfg.against != "" {
		bin, desc, err := resolveAgainst(cfg.against, root, b.work)
		if err != nil {
			return err
		}
		if b.srv, err = startServers(); err != nil {
			return err
		}
		atExit(b.srv.close)
		if err := b.compare(&info, bin, desc); err != nil {
			return err
		}
		progress("done in %s", time.Since(began).Round(time.Second))
		return nil
	}

	ps := cfg.only
	if ps.needTunnel() {
		if b.srv, err = startServers(); err != nil {
			return err
		}
		atExit(b.srv.close)
	}
	if ps.needSSH() {
		if err := b.startSSH(); err != nil {
			return err
		}
		info.cipher = b.ssh.cipher
	}
	if ps.needTunnel() {
		if err := os.Mkdir(b.profileDir(), 0o755); err != nil {
			return err
		}
		if err := b.startTunnel(); err != nil {
			return err
		}
	}
	if ps.needSSH() {
		if err := b.startCeiling(); err != nil {
			return err
		}
		info.pipeCipher = b.pipe.cipher
		if err := b.startSmallBoard(); err != nil {
			return err
		}
	}

	var res results
	res.host = info
	if ps.has("bulk") {
		progress("== 1. bulk throughput: %d rounds × %d paths × up/down, %d MiB or %s each", cfg.rounds, len(b.targets), cfg.bulkBytes>>20, cfg.bulkCap)
		settled := b.settleStart()
		if err := b.bulk(&res); err != nil {
			return err
		}
		progress("== 1a. the roles' RSS %s after the bulk rounds", settleWait)
		res.settle = settled()
	}
	if ps.has("layers") {
		progress("== 1b. CPU by layer: one profiled upload and download through the pipe, direct and relayed")
		if err := b.profileLayers(&res); err != nil {
			return err
		}
	}
	if ps.has("latency") {
		progress("== 2. connect + 1-byte echo: %d warm-up + %d samples per path, interleaved", cfg.warmup, cfg.samples)
		if err := b.latency(&res); err != nil {
			return err
		}
	}
	if ps.has("concurrent") {
		progress("== 3. %d concurrent streams × %d KiB echo through one socksd", cfg.streams, cfg.streamBytes>>10)
		for _, t := range []*target{b.direct, b.relayed} {
			r, err := b.concurrent(t)
			if err != nil {
				return err
			}
			res.conc = append(res.conc, r)
		}
	}
	if ps.has("neighbour") {
		progress("== 3b. a busy neighbour: round trips to a second device through each socksd, alone and beside the first device's download")
		if res.neighbour, err = b.neighbour(); err != nil {
			return err
		}
	}
	if ps.has("streams") {
		progress("== 4. relay memory: %d idle relayed streams", cfg.idleStreams)
		if res.idle, err = b.idleStreams(); err != nil {
			return err
		}
	}
	if ps.has("devices") {
		progress("== 4b. relay memory: %d idle devices on a fresh relay", cfg.devices)
		if res.dev, err = b.idleDevices(); err != nil {
			return err
		}
	}
	if ps.has("footprint") {
		progress("== 6. footprint: a fresh agent with 2 ports and a fresh socksd, one idle connection, %s idle", *footprintSettle)
		if res.foot, err = b.footprint(); err != nil {
			return err
		}
	}
	if err := b.alive(); err != nil {
		return fmt.Errorf("after the measurements: %w", err)
	}
	res.elapsed = time.Since(began)
	res.host.other = res.host.otherCPU()
	progress("done in %s", res.elapsed.Round(time.Second))
	if !ps.all() && !ps.needSSH() {
		fmt.Print(res.onlyTable(ps))
		return nil
	}
	fmt.Print(res.table())
	fmt.Print(res.smallBoardTable(b.board.ciphers))
	fmt.Print(res.layerTable())
	return nil
}

// alive checks that every daemon the setup started is still running.
func (b *bench) alive() error {
	ps := append([]*proc{b.relay, b.device, b.sDirect, b.sRelayed, b.sshD}, b.extra...)
	if b.ssh != nil {
		ps = append(ps, b.ssh.sshd)
	}
	for _, p := range ps {
		if p == nil { // not started: no part chosen with -only needs it
			continue
		}
		if err := p.alive(); err != nil {
			return err
		}
	}
	return nil
}

// preflight checks for what the run needs: root and OpenSSH unless ssh
// is false (-against runs no ssh), OpenBSD nc always.
func preflight(ssh bool) error {
	var missing []string
	if ssh && os.Geteuid() != 0 {
		return errors.New("must run as root: it creates the user " + sshUser + " (useradd) and runs a throwaway sshd; run `sudo make bench`")
	}
	if st, err := os.Stat("/usr/sbin/sshd"); ssh && (err != nil || st.Mode()&0o111 == 0) {
		missing = append(missing, "/usr/sbin/sshd (openssh-server)")
	}
	type tool struct{ name, pkg string }
	tools := []tool{{"head", "coreutils"}, {"go", "Go toolchain"}}
	if ssh {
		tools = append(tools, tool{"ssh", "openssh-client"}, tool{"ssh-keygen", "openssh-client"}, tool{"useradd", "passwd"}, tool{"passwd", "passwd"})
	}
	for _, tool := range tools {
		if _, err := lookPath(tool.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", tool.name, tool.pkg))
		}
	}
	out, _ := exec.Command("nc", "-h").CombinedOutput() // exits non-zero
	if s := string(out); !strings.Contains(s, "OpenBSD netcat") && !strings.Contains(s, "-X proxy_") {
		missing = append(missing, "nc with -X (netcat-openbsd)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s (as root, `make deps` installs them)", strings.Join(missing, ", "))
	}
	return nil
}

func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func moduleRoot() (string, error) {
	if out, err := exec.Command("go", "env", "GOMOD").Output(); err == nil {
		if p := strings.TrimSpace(string(out)); p != "" && p != os.DevNull {
			return filepath.Dir(p), nil
		}
	}
	return "", errors.New("run it inside the module: go run ./test/bench")
}

func (b *bench) startSSH() error {
	progress("starting sshd (user %s) and ssh -D", sshUser)
	var err error
	if b.ssh, err = startSSHD(b.work); err != nil {
		return err
	}
	var socks string
	if b.sshD, socks, err = b.ssh.startSOCKS(b.work); err != nil {
		return err
	}
	sshdPID := b.ssh.sshd.pid()
	sshPID := b.sshD.pid()
	b.targets = append(b.targets,
		&target{name: "raw TCP", host: "127.0.0.1", sink: port(b.srv.sink), source: port(b.srv.source), echo: port(b.srv.echo)},
		&target{name: "ssh -D", proxy: socks, host: "127.0.0.1", sink: port(b.srv.sink), source: port(b.srv.source), echo: port(b.srv.echo),
			cpu: []cpuProbe{
				{"client", func() float64 { return cpuSeconds(sshPID) }},
				// sshd's work happens in the per-connection children.
				{"server", func() float64 { return treeCPUSeconds(sshdPID) }},
			}})
	return nil
}

// Ports the device publishes the servers as.
const (
	sinkRemote   = 9000
	sourceRemote = 9001
	echoRemote   = 9002
)

func (b *bench) startTunnel() error {
	relayHome := filepath.Join(b.work, "relay")
	var err error
	if b.relayID, err = b.tunnelID(relayHome); err != nil {
		return err
	}
	rport, err := freePortNet("udp")
	if err != nil {
		return err
	}
	relayAddr := b.relayID + "@" + addr(rport)
	b.relayAddr = relayAddr
	if b.relay, err = daemonEnv("relay", b.work, b.profileEnv(), b.bin, "--home", relayHome, "relay", "--listen", addr(rport)); err != nil {
		return err
	}

	devHome := filepath.Join(b.work, "device")
	if b.deviceID, err = b.tunnelID(devHome); err != nil {
		return err
	}
	if b.device, err = daemonEnv("publish", b.work, b.profileEnv(), b.bin, "--home", devHome, "publish", "--relay", relayAddr,
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.sink), sinkRemote),
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.source), sourceRemote),
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.echo), echoRemote)); err != nil {
		return err
	}

	host := b.deviceID + ".tunnel"
	for _, s := range []struct {
		name, path, want string
		p                **proc
	}{{"socksd-direct", "auto", "direct", &b.sDirect}, {"socksd-relayed", "relay", "relayed", &b.sRelayed}} {
		home := filepath.Join(b.work, s.name)
		if _, err := b.tunnelID(home); err != nil {
			return err
		}
		sp, err := freePort()
		if err != nil {
			return err
		}
		p, err := daemonEnv(s.name, b.work, b.profileEnv(), b.bin, "--home", home, "socksd", "--relay", relayAddr, "--path", s.path, "--listen", addr(sp))
		if err != nil {
			return err
		}
		*s.p = p
		if err := waitTCP(addr(sp), 15*time.Second, p); err != nil {
			return err
		}
		socksPID, devPID, relayPID := p.pid(), b.device.pid(), b.relay.pid()
		t := &target{name: "tunnel " + s.want, proxy: addr(sp), host: host, sink: sinkRemote, source: sourceRemote, echo: echoRemote,
			home: home, devHome: devHome, wantPath: s.want, socksd: p,
			cpu: []cpuProbe{
				{"client", func() float64 { return cpuSeconds(socksPID) }},
				{"server", func() float64 { return cpuSeconds(devPID) }},
			},
			procs: []roleProc{{"client", p}, {"server", b.device}}}
		if s.want == "relayed" {
			t.cpu = append(t.cpu, cpuProbe{"relay", func() float64 { return cpuSeconds(relayPID) }})
			t.procs = append(t.procs, roleProc{"relay", b.relay})
		}
		b.targets = append(b.targets, t)
		if s.want == "direct" {
			b.direct = t
		} else {
			b.relayed = t
		}
	}

	return b.waitPaths([]*target{b.direct, b.relayed}, b.device)
}

// waitPaths waits for first contact through each of ts (the device may
// still be registering, so it retries for a while), then for each path to
// be the one wanted (direct: punched).
func (b *bench) waitPaths(ts []*target, device *proc) error {
	for _, t := range ts {
		deadline := time.Now().Add(20 * time.Second)
		for {
			_, err := echoOnce(t)
			if err == nil {
				break
			}
			for _, p := range []*proc{b.relay, device, t.socksd} {
				if e := p.alive(); e != nil {
					return e
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: no echo through %s after 20 s: %v\nsocksd log:\n%s\ndevice log:\n%s", t.name, t.proxy, err, t.socksd.logTail(20), device.logTail(20))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, t := range ts {
		deadline := time.Now().Add(15 * time.Second)
		for {
			path, err := b.pathOf(t)
			if err == nil && path == t.wantPath {
				progress("%s: path %s%s", t.name, path, b.pathVia(t))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: path is %q (%v) after 15 s, want %q", t.name, path, err, t.wantPath)
			}
			_, _ = echoOnce(t) // keep the connection busy while it probes
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

func (b *bench) tunnelID(home string) (string, error) {
	out, err := exec.Command(b.bin, "--home", home, "id").Output()
	if err != nil {
		return "", fmt.Errorf("tunnel --home %s id: %w", home, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// pathOf asks the status sockets of the socksd and of the device (what
// `tunnel status` reads) which path their connection takes; both must
// agree.
func (b *bench) pathOf(t *target) (string, error) {
	cd, err := roleStatus(t.home, "socksd")
	if err != nil {
		return "", err
	}
	dd, err := roleStatus(t.devHome, "publish")
	if err != nil {
		return "", err
	}
	cp, _ := peerOf(cd, b.deviceOf(t))
	dp, _ := peerOf(dd, cd.ID)
	clientPath, devPath := cp.Path, dp.Path
	if clientPath != devPath {
		return clientPath + "/" + devPath, fmt.Errorf("socksd sees %q, device sees %q", clientPath, devPath)
	}
	return clientPath, nil
}

// pathVia says where the socksd of t sends to the device, and how the
// path carries packets, as its status tells: two setups of one build can
// differ there (-against).
func (b *bench) pathVia(t *target) string {
	cd, err := roleStatus(t.home, "socksd")
	if err != nil {
		return ""
	}
	if p, ok := peerOf(cd, b.deviceOf(t)); ok {
		return fmt.Sprintf(" via %s, packets %s", p.Via, p.Packets)
	}
	return ""
}

// senderPackets is what the sending end of a transfer over t (the socksd
// for an upload, the device for a download) counts, as its status tells,
// of the packets of its connection to the other end: sent so far, and
// declared lost.
func (b *bench) senderPackets(t *target, dir string) (sent, lost uint64, ok bool) {
	cd, err := roleStatus(t.home, "socksd")
	if err != nil {
		return 0, 0, false
	}
	d, peer := cd, b.deviceOf(t)
	if dir == "down" {
		if d, err = roleStatus(t.devHome, "publish"); err != nil {
			return 0, 0, false
		}
		peer = cd.ID
	}
	p, ok := peerOf(d, peer)
	return p.PacketsSent, p.PacketsLost, ok
}

// deviceOf is the ID of the device t reaches.
func (b *bench) deviceOf(t *target) string {
	if t.deviceID != "" {
		return t.deviceID
	}
	return b.deviceID
}

// peerOf is the peer id in a role's status; false when it has none.
func peerOf(d roles.Status, id string) (roles.PeerStatus, bool) {
	for _, p := range d.Peers {
		if p.ID == id {
			return p, true
		}
	}
	return roles.PeerStatus{}, false
}

// roleStatus is the status of role running with home, as `tunnel status`
// reads it; a zero Status when that role does not answer but another does.
func roleStatus(home, role string) (roles.Status, error) {
	ds, err := roles.ReadStatus(home)
	if err != nil {
		return roles.Status{}, err
	}
	for _, d := range ds {
		if d.Role == role {
			return d, nil
		}
	}
	return roles.Status{}, nil
}

// procsOf is the cores in a role's `tunnel status` answer, "?" when it
// gave none.
func procsOf(d roles.Status, err error) string {
	if err != nil || d.Role == "" {
		return "?"
	}
	return strconv.Itoa(d.Procs)
}

//go:build linux

package e2e

// TestSoak: faults at length (`make soak`, root, not in CI). It runs only
// when SOAK is set to a duration (SOAK=10m): for that long it keeps ssh
// sessions and checksummed transfers running over three paths while it
// injects the faults a device meets on the internet, then says what broke,
// what each failure is owed to, and whether any process grew.
//
// Three worlds, each its own Topology (netns_test.go) with a real sshd in
// the device's namespace, all at once:
//
//	direct      cone/cone NATs: relay, publish, socksd; traffic goes direct
//	relayed     symmetric/symmetric NATs: the same; punching fails, relayed
//	redirected  symmetric/symmetric NATs, two relays A and B on pub sharing
//	            presence in a redis-server there (on pub's loopback); the
//	            device knows only A, the client only B, so the client is
//	            redirected to A, which relays
//
// Workload, in each world, from the client's namespace through socksd:
//   - an interactive ssh session (`ssh … cat`) sent one line a second and
//     checked for the same line back (soakEchoTimeout to answer; a session
//     that dies or goes silent is counted, and a new one opened);
//   - a loop of transfers: 4–16 MiB of random bytes up (`cat > F &&
//     sha256sum F` on the device) then the same file down (`cat F`), each
//     compared by SHA-256, with a short pause between iterations.
//
// A transfer is done (its bytes verified), failed (ssh did not complete:
// non-zero exit or timeout), or corrupted: ssh completed but the checksum
// or the length differs. A corrupted transfer, or an echo that comes back
// different, fails the soak whatever else happened.
//
// Faults, from the end of the warm-up on, one every soakInterval (shorter
// when SOAK is short, so that each kind happens at least once), rotating:
//
//	relay-kill     kill -9 the relay of each world (in the redirected world
//	               A and B by turns), restart it 2 s later, and wait for
//	               the nodes it held to register again
//	conntrack      conntrack -F in both NATs of every world
//	loss           1 % loss on one NAT of every world (the device's, then
//	               the client's by turns) for a minute, then removed
//	redis-restart  stop redis-server under the two relays, 10 s later
//	               start it again, empty, and wait for the device's
//	               presence to be written again
//
// Each fault is logged as it happens, with its time. Its window runs from
// its start to its recovery (relays re-registered, loss removed, presence
// rebuilt) plus soakGrace, the time its after-effects may take to show
// (ssh's ServerAlive gives up after 15-20 s; a path moves back within
// 6.5 s). A failed transfer, a missed echo and a session that died must
// overlap the window of a fault that touched their world: one that does
// not fails the soak, with its details. No fault starts in the final
// soakTail, so the end is measured in calm.
//
// Resources: every tunnel process (relays, publish, socksd) is sampled
// (VmRSS from /proc/PID/status, entries of /proc/PID/fd) every
// soakSampleEvery. The baseline is the first sample after the warm-up
// (for a restarted relay: the first sample soakSettle after its restart);
// the end is the last sample, taken under the same load at the end of
// SOAK. Growth beyond noise fails the soak: RSS more than +20 % and more
// than +8 MiB, or more than +16 fds.
//
// At the end the summary (per world: transfers, bytes verified,
// corrupted, failures with the fault each overlapped, echoes, reconnects,
// paths seen; the fault log; the RSS/fd table) is printed and written to
// summary.txt in a directory kept after the test (its path is printed),
// with the logs of every process.
//
// Every worker stops before the test returns (each command has a hard
// deadline); processes and namespaces go with the suite's cleanups.

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

const (
	soakWarmup      = 60 * time.Second
	soakInterval    = 75 * time.Second
	soakTail        = 60 * time.Second
	soakGrace       = 30 * time.Second
	soakSettle      = 30 * time.Second
	soakSampleEvery = 10 * time.Second
	soakLossFor     = 60 * time.Second
	soakLoss        = 0.01
	soakRedisDown   = 10 * time.Second
	soakRelayDown   = 2 * time.Second

	soakEchoTimeout     = 15 * time.Second
	soakTransferTimeout = 150 * time.Second
	soakPause           = time.Second
	soakMinSize         = 4 << 20
	soakMaxSize         = 16 << 20

	// Growth beyond noise, from the baseline to the end.
	soakRSSPercent = 20
	soakRSSFactor  = 1 + soakRSSPercent/100.0
	soakRSSSlack   = 8 << 20
	soakFDSlack    = 16

	soakRedisPort = 6379
)

var soakFaultKinds = []string{"relay-kill", "conntrack", "loss", "redis-restart"}

// soakWorld is one of the three worlds and what happened in it.
type soakWorld struct {
	*natWorld
	name     string // direct, relayed, redirected
	desc     string
	wantPath string

	// The redirected world only: relay A is natWorld.relay.
	relayB     *proc
	relayBHome string
	relayAAddr string // ID@IP:PORT
	relayBAddr string
	redisBin   string
	redis      *proc

	// Under soak.mu.
	upDone, upFailed, downDone, downFailed int
	bytesVerified                          int64
	corrupted                              []string
	echoDone, echoMissed, echoWrong        int
	echoSlow                               int // answered after more than a second
	echoMax                                time.Duration
	sessions, reconnects                   int
	paths                                  map[string]int
}

// soakEvent is something that went wrong: a failed transfer, a missed
// echo, a session that died or could not be opened.
type soakEvent struct {
	world    string
	what     string
	from, to time.Time
	detail   string
	fault    string // the fault window it overlapped, "" if none
}

// soakFault is one injected fault.
type soakFault struct {
	n         int
	kind      string
	worlds    []string
	start     time.Time
	recovered time.Time // zero until it has
	detail    []string
}

func (f *soakFault) name() string { return fmt.Sprintf("%s #%d", f.kind, f.n) }

func (f *soakFault) hits(world string) bool {
	for _, w := range f.worlds {
		if w == world {
			return true
		}
	}
	return false
}

// windowEnd is the end of the fault's window (until end if it never
// recovered).
func (f *soakFault) windowEnd(end time.Time) time.Time {
	if f.recovered.IsZero() {
		return end
	}
	return f.recovered.Add(soakGrace)
}

// procSample is one reading of a process's resources.
type procSample struct {
	at    time.Time
	rssKB int64
	fds   int
}

// soakProc is one incarnation of a tunnel process.
type soakProc struct {
	label    string
	p        *proc
	gen      int // restarts before this incarnation
	replaced bool
	base     procSample
	last     procSample
	peak     procSample // highest RSS
}

type soak struct {
	t      *testing.T
	start  time.Time
	end    time.Time // of the workload (start + SOAK)
	warmAt time.Time
	dir    string // kept after the test: summary.txt, logs
	data   string // the transfers' files, removed after the test
	worlds []*soakWorld

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	lastSamp time.Time

	mu       sync.Mutex
	events   []*soakEvent
	faults   []*soakFault
	procs    []*soakProc
	problems []string // fail the soak whatever the attribution
	quiet    bool     // the test is ending: workers no longer log
}

func TestSoak(t *testing.T) {
	v := os.Getenv("SOAK")
	if v == "" {
		t.Skip("soak test: runs only with SOAK set to a duration, e.g. `make soak SOAK=10m` (root, takes SOAK plus a few minutes)")
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 3*time.Minute {
		t.Fatalf("SOAK=%q: want a duration of at least 3m (e.g. 10m)", v)
	}
	// Asked for explicitly: missing prerequisites fail rather than skip.
	netnsTools.once.Do(probeNetns)
	if msg := netnsTools.fail + netnsTools.skip; msg != "" {
		t.Fatalf("SOAK is set but: %s", msg)
	}
	prereqOnce.Do(func() { prereqMissing = checkPrereqs() })
	if len(prereqMissing) > 0 {
		t.Fatalf("SOAK is set but e2e prerequisites are missing: %s (as root, `make deps` installs them)", strings.Join(prereqMissing, "; "))
	}
	redisBin, err := lookPath("redis-server")
	if err != nil {
		t.Fatal("SOAK is set but redis-server is not installed (as root, `make deps` installs it)")
	}

	s := &soak{t: t, stop: make(chan struct{})}
	if s.dir, err = os.MkdirTemp("", "tunnel-soak-"); err != nil {
		t.Fatal(err)
	}
	if s.data, err = os.MkdirTemp("", "tunnel-soak-data-"); err != nil {
		t.Fatal(err)
	}
	// Not sticky: the transfers' user writes here, and root may replace
	// its files (fs.protected_regular applies to sticky directories).
	if err := os.Chmod(s.data, 0o777); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(s.data) })
	// Whatever happens below, the summary and the logs are written.
	defer s.finish()

	setupStart := time.Now()
	direct := &soakWorld{natWorld: startNATWorld(t, NATCone, NATCone), name: "direct",
		desc: "cone/cone NATs, one relay: direct after punching", wantPath: "direct"}
	relayed := &soakWorld{natWorld: startNATWorld(t, NATSymmetric, NATSymmetric), name: "relayed",
		desc: "symmetric/symmetric NATs, one relay: relayed", wantPath: "relayed"}
	redirected := startRedirectedWorld(t, redisBin)
	s.worlds = []*soakWorld{direct, relayed, redirected}
	for _, w := range s.worlds {
		w.paths = map[string]int{}
		s.track(w.name+"/"+w.relayLabel("a"), w.relay, 0)
		if w.relayB != nil {
			s.track(w.name+"/relay-b", w.relayB, 0)
		}
		s.track(w.name+"/publish", w.device, 0)
		s.track(w.name+"/socksd", w.socksd, 0)
	}
	for _, w := range s.worlds {
		if r := w.ssh(60*time.Second, "echo first"); r.Code != 0 || strings.TrimSpace(string(r.Stdout)) != "first" {
			t.Fatalf("%s world: first ssh: %s\nsocksd:\n%s", w.name, r, tail(w.socksd.log(), 30, 8<<10))
		}
		w.waitPath(t, w.wantPath, 30*time.Second)
		if w.relayB != nil {
			if _, via := w.path(t); !strings.HasSuffix(w.relayAAddr, "@"+via) && via != w.relayAAddr {
				t.Fatalf("redirected world: relayed via %q, want the device's home, relay A (%s)", via, w.relayAAddr)
			}
		}
	}
	t.Logf("soak: three worlds up in %s; running for %s; output in %s", time.Since(setupStart).Round(time.Second), dur, s.dir)

	s.start = time.Now()
	s.end = s.start.Add(dur)
	warmup := min(soakWarmup, dur/6)
	tailQuiet := min(soakTail, dur/6)
	s.warmAt = s.start.Add(warmup)
	// At least one fault of each kind, one every soakInterval at most.
	interval := min(soakInterval, (dur-warmup-tailQuiet-15*time.Second)/time.Duration(len(soakFaultKinds)))
	lossFor := min(soakLossFor, interval-15*time.Second)
	redisDown := min(soakRedisDown, interval/4)

	for _, w := range s.worlds {
		s.wg.Add(2)
		go s.echoWorker(w)
		go s.transferWorker(w)
	}

	s.waitUntil(s.warmAt)
	s.sample()
	t.Logf("soak: warm-up over; baseline taken; a fault every %s", interval.Round(time.Second))

	relayKills, losses := 0, 0
	for k := 0; ; k++ {
		at := s.warmAt.Add(15*time.Second + time.Duration(k)*interval)
		kind := soakFaultKinds[k%len(soakFaultKinds)]
		need := 15 * time.Second
		switch kind {
		case "loss":
			need = lossFor
		case "redis-restart":
			need = redisDown + 10*time.Second
		}
		if at.Add(need).After(s.end.Add(-tailQuiet)) {
			break
		}
		s.waitUntil(at)
		f := &soakFault{n: k + 1, kind: kind, start: time.Now()}
		s.mu.Lock()
		s.faults = append(s.faults, f)
		s.mu.Unlock()
		switch kind {
		case "relay-kill":
			s.faultRelayKill(f, relayKills)
			relayKills++
		case "conntrack":
			s.faultConntrack(f)
		case "loss":
			s.faultLoss(f, losses, lossFor)
			losses++
		case "redis-restart":
			s.faultRedis(f, redirected, redisDown)
		}
		t.Logf("soak: %s %s: %s; recovered %s after its start",
			s.at(f.start), f.name(), strings.Join(f.detail, "; "), f.recovered.Sub(f.start).Round(100*time.Millisecond))
	}
	s.waitUntil(s.end)
	s.sample()
	t.Logf("soak: %s of workload over; end sample taken; stopping the workers", dur)
	s.stopWorkers()
}

// stopWorkers tells the workers to stop and waits for them: each finishes
// what it is doing (a transfer has soakTransferTimeout at most).
func (s *soak) stopWorkers() {
	s.stopOnce.Do(func() {
		close(s.stop)
		waitFor := 2*soakTransferTimeout + 30*time.Second
		if d, ok := s.t.Deadline(); ok {
			waitFor = max(10*time.Second, min(waitFor, time.Until(d)-2*time.Minute))
		}
		done := make(chan struct{})
		go func() { s.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitFor):
			s.problem(fmt.Sprintf("workers did not stop within %s of the end", waitFor.Round(time.Second)))
		}
	})
}

func startRedirectedWorld(t *testing.T, redisBin string) *soakWorld {
	t.Helper()
	tp := NewTopology(t, NATSymmetric, NATSymmetric)
	nw := &natWorld{tp: tp}
	sshd, err := startSSHD()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sshd.stop)
	nw.sshd = sshd
	tp.Start(t, tp.Dev, "sshd-dev", "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(sshd.dir, "sshd_config"), "-o", "PidFile=none")
	w := &soakWorld{natWorld: nw, name: "redirected", redisBin: redisBin,
		desc:     "symmetric/symmetric NATs, device on relay A, client on relay B, presence in Redis: redirected, relayed by A",
		wantPath: "relayed"}
	w.redis = w.startRedis(t, "redis")
	nw.relayHome, w.relayBHome = t.TempDir(), t.TempDir()
	w.relayAAddr = fmt.Sprintf("%s@%s:%d", tunnelID(t, nw.relayHome), tp.PubIP, natRelayPort)
	w.relayBAddr = fmt.Sprintf("%s@%s:%d", tunnelID(t, w.relayBHome), tp.PubIP, natRelayPort+1)
	nw.relay = w.startNode(t, "a")
	w.relayB = w.startNode(t, "b")
	devHome := t.TempDir()
	nw.deviceID = tunnelID(t, devHome)
	nw.device = tp.Start(t, tp.Dev, "publish", tunnelBin, tunnelArgs(devHome, "publish", "--relay", w.relayAAddr,
		"-public", fmt.Sprintf("127.0.0.1:%d:22", sshd.port))...)
	nw.cliHome = t.TempDir()
	nw.socksd = tp.Start(t, tp.Cli, "socksd", tunnelBin, tunnelArgs(nw.cliHome, "socksd", "--relay", w.relayBAddr,
		"--listen", "127.0.0.1:1080")...)
	for _, p := range []*proc{nw.device, nw.socksd} {
		if !p.waitLog("registered with relay", 1, 20*time.Second) {
			t.Fatalf("redirected world: %s did not register:\n%s", p.name, p.log())
		}
	}
	return w
}

// startRedis runs redis-server on pub's loopback, empty, without persistence.
func (w *soakWorld) startRedis(t *testing.T, label string) *proc {
	t.Helper()
	p := w.tp.Start(t, w.tp.Pub, label, w.redisBin, "--port", strconv.Itoa(soakRedisPort), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes")
	if !p.waitLog("Ready to accept connections", 1, 15*time.Second) {
		p.dump(t)
		t.Fatalf("redis-server in %s did not start (%s)", w.tp.Pub, p.exitDesc())
	}
	return p
}

// startNode starts relay "a" or "b" of the redirected world.
func (w *soakWorld) startNode(t *testing.T, which string) *proc {
	t.Helper()
	home, port := w.relayHome, natRelayPort
	if which == "b" {
		home, port = w.relayBHome, natRelayPort+1
	}
	listen := fmt.Sprintf("%s:%d", w.tp.PubIP, port)
	p := w.tp.Start(t, w.tp.Pub, "relay-"+which, tunnelBin, tunnelArgs(home, "relay", "--listen", listen,
		"--registry", fmt.Sprintf("redis://127.0.0.1:%d/0", soakRedisPort), "--advertise", listen)...)
	if !p.waitLog("relay listening", 1, 15*time.Second) {
		p.dump(t)
		t.Fatalf("relay %s in %s did not start (%s)", which, w.tp.Pub, p.exitDesc())
	}
	return p
}

// relayLabel names relay A in the table: "relay" in the one-relay worlds.
func (w *soakWorld) relayLabel(which string) string {
	if w.relayB == nil {
		return "relay"
	}
	return "relay-" + which
}

// sshArgs is the ssh command line, from the client's namespace through
// socksd, running remote on the device.
func (w *soakWorld) sshArgs(remote string) []string {
	return []string{"netns", "exec", w.tp.Cli, "ssh", "-F", w.sshd.clientConf,
		"-o", "ProxyCommand=nc -X 5 -x 127.0.0.1:1080 %h %p", sshUser + "@" + w.deviceID + ".tunnel", remote}
}

// ---- bookkeeping ----

func (s *soak) at(tm time.Time) string {
	if s.start.IsZero() {
		return tm.Format("15:04:05")
	}
	d := tm.Sub(s.start).Round(100 * time.Millisecond)
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%02d:%04.1f (%s)", sign, int(d/time.Minute), (d % time.Minute).Seconds(), tm.Format("15:04:05"))
}

func (s *soak) stopped() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// sleep waits d or until the stop; false if stopped.
func (s *soak) sleep(d time.Duration) bool {
	select {
	case <-s.stop:
		return false
	case <-time.After(d):
		return true
	}
}

func (s *soak) event(w *soakWorld, what string, from, to time.Time, detail string) {
	s.mu.Lock()
	s.events = append(s.events, &soakEvent{world: w.name, what: what, from: from, to: to, detail: detail})
	quiet := s.quiet
	s.mu.Unlock()
	if quiet {
		return
	}
	s.t.Logf("soak: %s %s: %s (%s): %s", s.at(to), w.name, what, to.Sub(from).Round(100*time.Millisecond), oneLine(detail, 300))
}

func (s *soak) problem(msg string) {
	s.mu.Lock()
	s.problems = append(s.problems, msg)
	quiet := s.quiet
	s.mu.Unlock()
	if quiet {
		return
	}
	s.t.Logf("soak: PROBLEM: %s", msg)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}

// ---- workload ----

// echoWorker keeps an interactive ssh session open (`cat` on the device)
// and sends it a line a second, each expected back unchanged.
func (s *soak) echoWorker(w *soakWorld) {
	defer s.wg.Done()
	nonce := randName("")
	seq := 0
	for first := true; !s.stopped(); first = false {
		if !first {
			s.mu.Lock()
			w.reconnects++
			s.mu.Unlock()
		}
		s.mu.Lock()
		w.sessions++
		s.mu.Unlock()
		ok := s.echoSession(w, nonce, &seq)
		if !ok && !s.sleep(time.Second) {
			return
		}
	}
}

// echoSession runs one session until the stop (true) or until it dies or
// goes silent (false, recorded).
func (s *soak) echoSession(w *soakWorld, nonce string, seq *int) bool {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	args := w.sshArgs("cat")
	cmd := exec.CommandContext(ctx, netnsTools.ip, args...)
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 3 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		s.problem(fmt.Sprintf("%s: echo session: %v", w.name, err))
		return false
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.problem(fmt.Sprintf("%s: echo session: %v", w.name, err))
		return false
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		s.problem(fmt.Sprintf("%s: echo session: %v", w.name, err))
		return false
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		buf := make([]byte, 0, 4096)
		one := make([]byte, 4096)
		for {
			n, err := stdout.Read(one)
			buf = append(buf, one[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				lines <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	// ended kills the session (if still there) and reaps it.
	ended := func() string {
		cancel()
		err := cmd.Wait()
		for range lines {
		}
		return fmt.Sprintf("%s; stderr: %s", describeExit(err), strings.TrimSpace(stderr.String()))
	}
	lastOK := started
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			// The end: close stdin, cat ends, ssh exits 0.
			stdin.Close()
			timer := time.NewTimer(15 * time.Second)
			defer timer.Stop()
			var extra []string
			for open := true; open; {
				select {
				case l, ok := <-lines:
					if !ok {
						open = false
					} else {
						extra = append(extra, l)
					}
				case <-timer.C:
					open = false
				}
			}
			werr := make(chan error, 1)
			go func() { werr <- cmd.Wait() }()
			select {
			case err := <-werr:
				if err != nil || len(extra) > 0 {
					s.event(w, "echo session at the end", lastOK, time.Now(),
						fmt.Sprintf("%s, %d unexpected lines; stderr: %s", describeExit(err), len(extra), strings.TrimSpace(stderr.String())))
				}
			case <-time.After(20 * time.Second):
				cancel()
				<-werr
				s.event(w, "echo session at the end", lastOK, time.Now(), "ssh did not exit 20 s after its stdin closed")
			}
			return true
		case <-tick.C:
		}
		*seq++
		msg := fmt.Sprintf("soak %s %d %s", w.name, *seq, nonce)
		sent := time.Now()
		if _, err := io.WriteString(stdin, msg+"\n"); err != nil {
			detail := ended()
			s.mu.Lock()
			w.echoMissed++
			s.mu.Unlock()
			s.event(w, "echo session died", lastOK, time.Now(), "write: "+err.Error()+"; "+detail)
			return false
		}
		select {
		case l, ok := <-lines:
			if !ok {
				detail := ended()
				s.mu.Lock()
				w.echoMissed++
				s.mu.Unlock()
				what := "echo session died"
				if lastOK == started {
					what = "echo session did not open"
				}
				s.event(w, what, lastOK, time.Now(), detail)
				return false
			}
			lat := time.Since(sent)
			s.mu.Lock()
			if l == msg {
				w.echoDone++
				w.echoMax = max(w.echoMax, lat)
				if lat > time.Second {
					w.echoSlow++
				}
			} else {
				w.echoWrong++
				w.corrupted = append(w.corrupted, fmt.Sprintf("%s echo: sent %q, got %q", s.at(time.Now()), msg, l))
			}
			s.mu.Unlock()
			if l != msg {
				s.event(w, "echo came back different", sent, time.Now(), fmt.Sprintf("sent %q, got %q", msg, l))
				ended()
				return false
			}
			lastOK = time.Now()
		case <-time.After(soakEchoTimeout):
			detail := ended()
			s.mu.Lock()
			w.echoMissed++
			s.mu.Unlock()
			s.event(w, "echo session went silent", lastOK, time.Now(),
				fmt.Sprintf("no echo of line %d within %s; %s", *seq, soakEchoTimeout, detail))
			return false
		}
	}
}

// transferWorker moves 4-16 MiB of random bytes up and down, over and over.
func (s *soak) transferWorker(w *soakWorld) {
	defer s.wg.Done()
	for i := 0; !s.stopped(); i++ {
		size := soakMinSize + mrand.IntN(soakMaxSize-soakMinSize+1)
		data := make([]byte, size)
		_, _ = crand.Read(data)
		want := sha(data)
		remote := filepath.Join(s.data, fmt.Sprintf("%s-%d", w.name, i))
		what := fmt.Sprintf("%.1f MiB", float64(size)/(1<<20))

		start := time.Now()
		r := runCmd(soakTransferTimeout, nil, bytes.NewReader(data), netnsTools.ip,
			w.sshArgs(fmt.Sprintf("cat > %s && sha256sum %s", remote, remote))...)
		upOK := false
		switch got := strings.Fields(string(r.Stdout)); {
		case r.Code != 0:
			s.mu.Lock()
			w.upFailed++
			s.mu.Unlock()
			s.event(w, "upload "+what+" failed", start, time.Now(), failDetail(r))
		case len(got) < 1 || got[0] != want:
			s.mu.Lock()
			w.corrupted = append(w.corrupted, fmt.Sprintf("%s upload %s: ssh exit 0 but the device's sha256 is %q, want %s",
				s.at(start), what, strings.TrimSpace(string(r.Stdout)), want))
			s.mu.Unlock()
			s.event(w, "upload "+what+" CORRUPTED", start, time.Now(), string(r.Stdout))
		default:
			upOK = true
			s.mu.Lock()
			w.upDone++
			w.bytesVerified += int64(size)
			s.mu.Unlock()
		}
		if s.stopped() {
			os.Remove(remote)
			return
		}
		if !upOK {
			// The download still has something known to fetch.
			os.Remove(remote)
			if err := os.WriteFile(remote, data, 0o644); err != nil {
				s.problem(fmt.Sprintf("%s: writing %s: %v", w.name, remote, err))
				return
			}
		}
		start = time.Now()
		r = runCmd(soakTransferTimeout, nil, nil, netnsTools.ip, w.sshArgs("cat "+remote)...)
		switch {
		case r.Code != 0:
			s.mu.Lock()
			w.downFailed++
			s.mu.Unlock()
			s.event(w, "download "+what+" failed", start, time.Now(), failDetail(r))
		case len(r.Stdout) != size || sha(r.Stdout) != want:
			s.mu.Lock()
			w.corrupted = append(w.corrupted, fmt.Sprintf("%s download %s: ssh exit 0 but got %d bytes, sha256 %s, want %d %s",
				s.at(start), what, len(r.Stdout), sha(r.Stdout), size, want))
			s.mu.Unlock()
			s.event(w, "download "+what+" CORRUPTED", start, time.Now(), fmt.Sprintf("%d bytes", len(r.Stdout)))
		default:
			s.mu.Lock()
			w.downDone++
			w.bytesVerified += int64(size)
			s.mu.Unlock()
		}
		os.Remove(remote)
		if !s.sleep(soakPause) {
			return
		}
	}
}

func failDetail(r result) string {
	d := fmt.Sprintf("exit %d after %s", r.Code, r.Elapsed.Round(100*time.Millisecond))
	if r.TimedOut {
		d += " (timed out)"
	}
	if e := strings.TrimSpace(string(r.Stderr)); e != "" {
		d += "; stderr: " + tail(e, 3, 400)
	}
	return d
}

// ---- faults (run on the test's goroutine: t.Fatal is allowed) ----

func (s *soak) allWorlds() []string {
	var names []string
	for _, w := range s.worlds {
		names = append(names, w.name)
	}
	return names
}

// faultRelayKill kills -9 the relay of every world (in the redirected
// world A or B by turns), restarts each soakRelayDown later, and waits
// until the nodes it held are registered again.
func (s *soak) faultRelayKill(f *soakFault, turn int) {
	t := s.t
	f.worlds = s.allWorlds()
	type kill struct {
		w       *soakWorld
		which   string // a or b
		label   string
		waitFor []*proc
		before  []int
	}
	var kills []*kill
	for _, w := range s.worlds {
		k := &kill{w: w, which: "a"}
		if w.relayB != nil && turn%2 == 1 {
			k.which = "b"
		}
		k.label = w.name + "/" + w.relayLabel(k.which)
		switch {
		case w.relayB == nil:
			k.waitFor = []*proc{w.device, w.socksd}
		case k.which == "a":
			k.waitFor = []*proc{w.device}
		default:
			k.waitFor = []*proc{w.socksd}
		}
		for _, p := range k.waitFor {
			k.before = append(k.before, p.count("registered with relay"))
		}
		kills = append(kills, k)
	}
	for _, k := range kills {
		if k.which == "b" {
			k.w.relayB.kill9()
		} else {
			k.w.relay.kill9()
		}
	}
	killed := time.Now()
	time.Sleep(soakRelayDown)
	for _, k := range kills {
		var p *proc
		switch {
		case k.w.relayB == nil:
			p = k.w.startRelay(t)
			if !p.waitLog("relay listening", 1, 15*time.Second) {
				p.dump(t)
				t.Fatalf("%s did not start again (%s)", k.label, p.exitDesc())
			}
			k.w.relay = p
		case k.which == "a":
			p = k.w.startNode(t, "a")
			k.w.relay = p
		default:
			p = k.w.startNode(t, "b")
			k.w.relayB = p
		}
		s.replace(k.label, p)
	}
	var parts []string
	for _, k := range kills {
		var took []string
		relay := k.w.relay
		if k.which == "b" {
			relay = k.w.relayB
		}
		for i, p := range k.waitFor {
			leases := relay // only the device holds a lease
			if p != k.w.device {
				leases = nil
			}
			if !registeredAgain(p, k.before[i], leases, 30*time.Second) {
				s.problem(fmt.Sprintf("%s: %s did not register again within 30 s of %s's restart", f.name(), p.name, k.label))
				took = append(took, p.name+" did not")
				continue
			}
			took = append(took, fmt.Sprintf("%s %.1fs", p.name, time.Since(killed).Seconds()))
		}
		parts = append(parts, fmt.Sprintf("%s (re-registered: %s)", k.label, strings.Join(took, ", ")))
	}
	f.recovered = time.Now()
	f.detail = append(f.detail, fmt.Sprintf("kill -9, restarted %s later: %s", soakRelayDown, strings.Join(parts, "; ")))
}

func (s *soak) faultConntrack(f *soakFault) {
	f.worlds = s.allWorlds()
	for _, w := range s.worlds {
		w.tp.FlushConntrack(s.t, w.tp.NAT1)
		w.tp.FlushConntrack(s.t, w.tp.NAT2)
	}
	f.recovered = time.Now()
	f.detail = append(f.detail, "conntrack -F in both NATs of every world")
}

func (s *soak) faultLoss(f *soakFault, turn int, lossFor time.Duration) {
	f.worlds = s.allWorlds()
	side := "device's"
	nat := func(w *soakWorld) string { return w.tp.NAT1 }
	if turn%2 == 1 {
		side = "client's"
		nat = func(w *soakWorld) string { return w.tp.NAT2 }
	}
	for _, w := range s.worlds {
		w.tp.AddLossDelay(s.t, nat(w), soakLoss, 0)
	}
	s.waitUntil(f.start.Add(lossFor))
	for _, w := range s.worlds {
		w.tp.RemoveLoss(s.t, nat(w), soakLoss)
	}
	f.recovered = time.Now()
	f.detail = append(f.detail, fmt.Sprintf("%g %% loss in the %s NAT of every world for %s, then removed",
		100*soakLoss, side, f.recovered.Sub(f.start).Round(time.Second)))
}

func (s *soak) faultRedis(f *soakFault, w *soakWorld, down time.Duration) {
	t := s.t
	f.worlds = []string{w.name}
	if _, _, err := w.redis.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	s.waitUntil(f.start.Add(down))
	w.redis = w.startRedis(t, "redis-restarted")
	restarted := time.Now()
	key := "tunnel:dev:" + w.deviceID
	cli, err := lookPath("redis-cli")
	if err != nil {
		f.recovered = restarted
		f.detail = append(f.detail, fmt.Sprintf("redis-server stopped, started again empty %s later (no redis-cli to watch presence)", down.Round(100*time.Millisecond)))
		return
	}
	for {
		r := w.tp.Run(10*time.Second, w.tp.Pub, cli, "-p", strconv.Itoa(soakRedisPort), "exists", key)
		if r.Code == 0 && strings.TrimSpace(string(r.Stdout)) == "1" {
			break
		}
		if time.Since(restarted) > 40*time.Second {
			s.problem(fmt.Sprintf("%s: the device's presence (%s) not in Redis 40 s after the restart", f.name(), key))
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	f.recovered = time.Now()
	f.detail = append(f.detail, fmt.Sprintf("redis-server stopped, started again empty %s later; the device's presence back %.1fs after the restart",
		down.Round(100*time.Millisecond), f.recovered.Sub(restarted).Seconds()))
}

// ---- resources and paths ----

func (s *soak) track(label string, p *proc, gen int) {
	s.mu.Lock()
	s.procs = append(s.procs, &soakProc{label: label, p: p, gen: gen})
	s.mu.Unlock()
}

// replace retires label's live incarnation for p, its restart, which
// takes its place in the table.
func (s *soak) replace(label string, p *proc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, sp := range s.procs {
		if sp.label == label && !sp.replaced {
			sp.replaced = true
			s.procs = slices.Insert(s.procs, i+1, &soakProc{label: label, p: p, gen: sp.gen + 1})
			return
		}
	}
	s.procs = append(s.procs, &soakProc{label: label, p: p})
}

func readProcSample(pid int) (procSample, error) {
	smp := procSample{at: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return smp, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v) // "12345 kB"
			if len(f) >= 1 {
				smp.rssKB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return smp, err
	}
	smp.fds = len(ents)
	return smp, nil
}

// sample reads every live tunnel process (a baseline if warm), checks none
// died on its own, and asks each socksd which path it uses.
func (s *soak) sample() {
	s.lastSamp = time.Now()
	s.mu.Lock()
	procs := append([]*soakProc(nil), s.procs...)
	s.mu.Unlock()
	for _, sp := range procs {
		if sp.replaced {
			continue
		}
		if sp.p.exited() {
			if !sp.p.expected() {
				s.problem(fmt.Sprintf("%s exited on its own (%s); log tail:\n%s", sp.label, sp.p.exitDesc(), tail(sp.p.log(), 30, 6<<10)))
				sp.p.allowExit()
			}
			continue
		}
		smp, err := readProcSample(sp.p.pid())
		if err != nil {
			continue
		}
		s.mu.Lock()
		sp.last = smp
		if smp.rssKB > sp.peak.rssKB {
			sp.peak = smp
		}
		eligible := !smp.at.Before(s.warmAt) && (sp.gen == 0 || smp.at.Sub(sp.p.started) >= soakSettle)
		if sp.base.at.IsZero() && eligible {
			sp.base = smp
		}
		s.mu.Unlock()
	}
	for _, w := range s.worlds {
		p := "none"
		if st, err := soakPeer(w); err == nil && st.Path != "" {
			p = st.Path
		} else if err != nil {
			p = "status error"
		}
		s.mu.Lock()
		w.paths[p]++
		s.mu.Unlock()
	}
}

// soakPeer is w.peer without t.Fatal.
func soakPeer(w *soakWorld) (peerStatus, error) {
	r := runTunnel(10*time.Second, nil, "--home", w.cliHome, "status", "--json")
	if r.Code != 0 {
		return peerStatus{}, fmt.Errorf("tunnel status: %s", r)
	}
	var docs []struct {
		Peers []peerStatus `json:"peers"`
	}
	if err := json.Unmarshal(r.Stdout, &docs); err != nil {
		return peerStatus{}, err
	}
	for _, d := range docs {
		for _, p := range d.Peers {
			if p.ID == w.deviceID {
				return p, nil
			}
		}
	}
	return peerStatus{}, nil
}

// waitUntil sleeps until tm, sampling every soakSampleEvery and logging
// progress every minute.
func (s *soak) waitUntil(tm time.Time) {
	for time.Now().Before(tm) {
		if time.Since(s.lastSamp) >= soakSampleEvery {
			before := s.lastSamp
			s.sample()
			if before.IsZero() || s.lastSamp.Truncate(time.Minute) != before.Truncate(time.Minute) {
				s.progress()
			}
		}
		time.Sleep(min(time.Until(tm), 500*time.Millisecond))
	}
}

func (s *soak) progress() {
	s.mu.Lock()
	defer s.mu.Unlock()
	var parts []string
	for _, w := range s.worlds {
		parts = append(parts, fmt.Sprintf("%s: %d/%d transfers done/failed, %d echoes, %d reconnects",
			w.name, w.upDone+w.downDone, w.upFailed+w.downFailed, w.echoDone, w.reconnects))
	}
	s.t.Logf("soak: %s %s", s.at(time.Now()), strings.Join(parts, "; "))
}

// ---- the end ----

// finish attributes the failures, prints the summary, writes it and the
// logs to s.dir, and fails the test on any finding.
func (s *soak) finish() {
	t := s.t
	if s.start.IsZero() {
		return // setup failed; its own error says why
	}
	// Normally done already; after a t.Fatal in a fault, not yet.
	s.stopWorkers()
	end := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiet = true // a worker that did not stop must not log after the test
	var unexplained []*soakEvent
	for _, e := range s.events {
		e.fault = s.attribute(e, end)
		if e.fault == "" {
			unexplained = append(unexplained, e)
		}
	}
	var growth []string
	summary := s.summary(end, &growth)
	fmt.Print(summary)
	path := filepath.Join(s.dir, "summary.txt")
	if err := os.WriteFile(path, []byte(summary), 0o644); err != nil {
		t.Errorf("writing the summary: %v", err)
	}
	logs := filepath.Join(s.dir, "logs")
	_ = os.MkdirAll(logs, 0o755)
	for _, sp := range s.procs {
		_ = os.WriteFile(filepath.Join(logs, fmt.Sprintf("%s.%d.log", strings.ReplaceAll(sp.label, "/", "-"), sp.gen)), []byte(sp.p.log()), 0o644)
	}
	fmt.Printf("soak: summary written to %s (process logs in %s)\n", path, logs)

	for _, w := range s.worlds {
		for _, c := range w.corrupted {
			t.Errorf("%s: CORRUPTED: %s", w.name, c)
		}
		if w.upDone+w.downDone == 0 {
			t.Errorf("%s: no transfer completed", w.name)
		}
		if w.echoDone == 0 {
			t.Errorf("%s: no echo came back", w.name)
		}
	}
	for _, e := range unexplained {
		t.Errorf("%s: %s at %s (from %s) outside every fault window: %s", e.world, e.what, s.at(e.to), s.at(e.from), e.detail)
	}
	for _, g := range growth {
		t.Errorf("growth beyond noise: %s", g)
	}
	for _, p := range s.problems {
		t.Errorf("%s", p)
	}
}

// attribute names the fault whose window (of the event's world) the event
// overlaps: preferably one holding the moment it failed.
func (s *soak) attribute(e *soakEvent, end time.Time) string {
	var overlap string
	for _, f := range s.faults {
		if !f.hits(e.world) {
			continue
		}
		we := f.windowEnd(end)
		if !e.to.Before(f.start) && !e.to.After(we) {
			return f.name()
		}
		if overlap == "" && !e.to.Before(f.start) && !e.from.After(we) {
			overlap = f.name()
		}
	}
	return overlap
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func (s *soak) summary(end time.Time, growth *[]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n==== soak summary: %s of workload (%s to %s), %d faults ====\n",
		s.end.Sub(s.start).Round(time.Second), s.start.Format("15:04:05"), s.end.Format("15:04:05"), len(s.faults))
	totalCorrupt := 0
	for _, w := range s.worlds {
		totalCorrupt += len(w.corrupted)
		fmt.Fprintf(&b, "\n-- world %s: %s\n", w.name, w.desc)
		fmt.Fprintf(&b, "   transfers: %d done (%d up, %d down), %d failed (%d up, %d down); bytes verified %s; corrupted %d\n",
			w.upDone+w.downDone, w.upDone, w.downDone, w.upFailed+w.downFailed, w.upFailed, w.downFailed,
			mib(w.bytesVerified), len(w.corrupted))
		fmt.Fprintf(&b, "   ssh echoes: %d done, %d missed, %d wrong; %d slower than 1 s, slowest %s; sessions %d, reconnections %d\n",
			w.echoDone, w.echoMissed, w.echoWrong, w.echoSlow, w.echoMax.Round(time.Millisecond), w.sessions, w.reconnects)
		var ps []string
		for _, k := range sortedKeys(w.paths) {
			ps = append(ps, fmt.Sprintf("%s %d", k, w.paths[k]))
		}
		fmt.Fprintf(&b, "   path samples (every %s): %s (want %s)\n", soakSampleEvery, strings.Join(ps, ", "), w.wantPath)
		for _, c := range w.corrupted {
			fmt.Fprintf(&b, "   CORRUPTED: %s\n", c)
		}
		n := 0
		for _, e := range s.events {
			if e.world != w.name {
				continue
			}
			if n == 0 {
				fmt.Fprintf(&b, "   failures:\n")
			}
			n++
			owed := "OUTSIDE EVERY FAULT WINDOW"
			if e.fault != "" {
				owed = "during " + e.fault
			}
			fmt.Fprintf(&b, "     %s %s (from %s): %s; %s\n", s.at(e.to), e.what, s.at(e.from), owed, oneLine(e.detail, 240))
		}
		if n == 0 {
			fmt.Fprintf(&b, "   failures: none\n")
		}
	}
	fmt.Fprintf(&b, "\n-- faults (window: start to recovery + %s)\n", soakGrace)
	for _, f := range s.faults {
		rec := "never recovered"
		if !f.recovered.IsZero() {
			rec = fmt.Sprintf("recovered %s, window to %s", s.at(f.recovered), s.at(f.windowEnd(end)))
		}
		fmt.Fprintf(&b, "   %s %-18s worlds %s; %s\n     %s\n", s.at(f.start), f.name(), strings.Join(f.worlds, ","), rec, strings.Join(f.detail, "; "))
	}
	fmt.Fprintf(&b, "\n-- tunnel processes: baseline (after warm-up, or %s after a restart) and end; noise: RSS +%d %% and +%s, fds +%d\n",
		soakSettle, int(soakRSSPercent), mib(soakRSSSlack), soakFDSlack)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "   process\tpid\trestarts\tbaseline at\tRSS base\tRSS end\tRSS peak\tΔRSS\tfds base\tfds end\tΔfds\tverdict")
	for _, sp := range s.procs {
		if sp.replaced {
			continue
		}
		verdict := "ok"
		switch {
		case sp.base.at.IsZero() || sp.last.at.IsZero():
			verdict = "no baseline (restarted too late)"
		default:
			dr := (sp.last.rssKB - sp.base.rssKB) * 1024
			df := sp.last.fds - sp.base.fds
			var bad []string
			if float64(sp.last.rssKB) > float64(sp.base.rssKB)*soakRSSFactor && dr > soakRSSSlack {
				bad = append(bad, fmt.Sprintf("RSS %s -> %s", mib(sp.base.rssKB*1024), mib(sp.last.rssKB*1024)))
			}
			if df > soakFDSlack {
				bad = append(bad, fmt.Sprintf("fds %d -> %d", sp.base.fds, sp.last.fds))
			}
			if len(bad) > 0 {
				verdict = "GROWTH: " + strings.Join(bad, ", ")
				*growth = append(*growth, sp.label+": "+strings.Join(bad, ", "))
			}
		}
		baseAt := "-"
		if !sp.base.at.IsZero() {
			baseAt = s.at(sp.base.at)
		}
		fmt.Fprintf(tw, "   %s\t%d\t%d\t%s\t%s\t%s\t%s\t%+.1f MiB\t%d\t%d\t%+d\t%s\n", sp.label, sp.p.pid(), sp.gen, baseAt,
			mib(sp.base.rssKB*1024), mib(sp.last.rssKB*1024), mib(sp.peak.rssKB*1024),
			float64(sp.last.rssKB-sp.base.rssKB)/1024, sp.base.fds, sp.last.fds, sp.last.fds-sp.base.fds, verdict)
	}
	tw.Flush()
	unexplained := 0
	for _, e := range s.events {
		if e.fault == "" {
			unexplained++
		}
	}
	fmt.Fprintf(&b, "\n-- verdict: corrupted %d, failures outside fault windows %d, growth beyond noise %d, other problems %d\n",
		totalCorrupt, unexplained, len(*growth), len(s.problems))
	for _, p := range s.problems {
		fmt.Fprintf(&b, "   problem: %s\n", p)
	}
	return b.String()
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

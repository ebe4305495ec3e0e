//go:build linux

package main

// The measurements. Each takes the setup of main.go and returns raw
// figures; report.go turns them into the table.

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/resolver"
)

// target is one way to reach the servers: raw TCP, ssh -D or a socksd.
type target struct {
	name               string
	proxy              string // SOCKS5 proxy address; "" for raw TCP
	host               string // what the client asks for
	sink, source, echo int

	// tunnel only
	home, devHome string
	wantPath      string
	socksd        *proc

	cpu   []cpuProbe // whose CPU the bulk runs charge to this path
	procs []roleProc // the processes of the path, by the roles of cpu (layers.go profiles them)

	deviceID string // the device it reaches, when not the bench's main one (smallboard.go)
}

type roleProc struct {
	role string
	p    *proc
}

// cpuProbe reads the CPU seconds of one role: "client" (ssh, socksd),
// "server" (sshd, the device agent) or "relay".
type cpuProbe struct {
	role string
	read func() float64
}

func (t *target) tunnel() bool { return t.socksd != nil }

func (t *target) cpuNow() map[string]float64 {
	m := map[string]float64{}
	for _, p := range t.cpu {
		m[p.role] = p.read()
	}
	return m
}

// ---- 1 and 5: bulk throughput and CPU per GB ----

type bulkRun struct {
	round   int
	dir     string // "up" or "down"
	bytes   int64
	dur     time.Duration
	capped  bool
	err     error
	cpu     map[string]float64 // seconds, per role
	pathBad string             // tunnel path seen after the run, when not the wanted one
	// sent and lost: the tunnel's sending end's packets during the run,
	// and those QUIC declared lost (lossOK: both ends' status answered).
	sent, lost uint64
	lossOK     bool
}

func (r bulkRun) gbps() float64 {
	if r.err != nil || r.dur <= 0 {
		return 0
	}
	return float64(r.bytes) * 8 / r.dur.Seconds() / 1e9
}

func (b *bench) bulk(res *results) error {
	res.bulk = map[string][]bulkRun{}
	for round := 1; round <= cfg.rounds; round++ {
		for _, dir := range []string{"up", "down"} {
			for _, t := range b.targets {
				r := b.bulkOnce(t, dir)
				r.round = round
				if t.tunnel() {
					if p, err := b.pathOf(t); err != nil || p != t.wantPath {
						r.pathBad = fmt.Sprintf("%s %v", p, err)
					}
				}
				msg := fmt.Sprintf("round %d/%d %-4s %-15s ", round, cfg.rounds, dir, t.name)
				if r.err != nil {
					progress("%sFAILED: %v", msg, r.err)
				} else {
					capped := ""
					if r.capped {
						capped = " (time cap)"
					}
					loss := ""
					if r.lossOK {
						loss = fmt.Sprintf("  lost %d of %d packets", r.lost, r.sent)
					}
					progress("%s%6.2f Gbit/s  %5.0f MiB in %.2f s%s%s%s", msg, r.gbps(), float64(r.bytes)/(1<<20), r.dur.Seconds(), capped, cpuText(r.cpu), loss)
				}
				if r.pathBad != "" {
					progress("%s   path after the run: %s (want %s)", msg, r.pathBad, t.wantPath)
				}
				res.bulk[t.name+" "+dir] = append(res.bulk[t.name+" "+dir], r)
				if err := b.alive(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func cpuText(m map[string]float64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range []string{"client", "server", "relay"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2fs", k, v))
		}
	}
	return "  cpu: " + strings.Join(parts, ", ")
}

func ncArgs(t *target, port int, extra ...string) []string {
	args := append([]string{}, extra...)
	if t.proxy != "" {
		args = append(args, "-X", "5", "-x", t.proxy)
	}
	return append(args, t.host, strconv.Itoa(port))
}

// bulkOnce moves cfg.bulkBytes (or what fits in cfg.bulkCap) one way:
// up is `head -c N /dev/zero | nc -N …` into the sink, timed by the sink;
// down is `nc … < /dev/null` from the source, read and timed here.
func (b *bench) bulkOnce(t *target, dir string) bulkRun {
	r := bulkRun{dir: dir}
	b.srv.setLimits(cfg.bulkBytes, cfg.bulkCap)
	var sent0, lost0 uint64
	var loss0 bool
	if t.tunnel() {
		sent0, lost0, loss0 = b.senderPackets(t, dir)
	}
	cpu0 := t.cpuNow()
	var err error
	if dir == "up" {
		r.bytes, r.dur, r.capped, err = b.upload(t)
	} else {
		r.bytes, r.dur, r.capped, err = b.download(t)
	}
	r.err = err
	cpu1 := t.cpuNow()
	r.cpu = map[string]float64{}
	for k, v := range cpu1 {
		r.cpu[k] = v - cpu0[k]
	}
	if loss0 {
		// A connection made anew since counts from zero, and a tunnel from
		// before these counters says 0: no figure then. quic-go may take a
		// loss back when the packet is acknowledged after all.
		if sent1, lost1, ok := b.senderPackets(t, dir); ok && sent1 > sent0 {
			r.sent, r.lossOK = sent1-sent0, true
			if lost1 > lost0 {
				r.lost = lost1 - lost0
			}
		}
	}
	return r
}

func (b *bench) upload(t *target) (int64, time.Duration, bool, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, 0, false, err
	}
	head := exec.Command("head", "-c", strconv.FormatInt(cfg.bulkBytes, 10), "/dev/zero")
	head.Stdout = pw
	var ncErr bytes.Buffer
	nc := exec.Command("nc", ncArgs(t, t.sink, "-N")...)
	nc.Stdin, nc.Stderr = pr, &ncErr
	ph, err := start("head", head)
	if err != nil {
		pr.Close()
		pw.Close()
		return 0, 0, false, err
	}
	defer ph.kill() // done, or to be stopped when the sink cut it short
	pn, err := start("nc", nc)
	pr.Close()
	pw.Close()
	if err != nil {
		return 0, 0, false, err
	}
	defer func() {
		if !pn.wait(10 * time.Second) {
			pn.kill()
		}
	}()
	var x xfer
	limit := time.NewTimer(cfg.bulkCap + time.Minute)
	defer limit.Stop()
	select {
	case x = <-b.srv.sunk:
	case <-pn.done:
		select {
		case x = <-b.srv.sunk:
		case <-time.After(3 * time.Second):
			return 0, 0, false, fmt.Errorf("nc exited (%s) before the sink saw the end of the upload: %s", pn.exitDesc(), strings.TrimSpace(ncErr.String()))
		}
	case <-limit.C:
		return 0, 0, false, errors.New("upload not done after the time cap plus a minute")
	}
	if x.Err != nil {
		if pn.wait(3 * time.Second) {
			return x.Bytes, 0, false, fmt.Errorf("sink: %w (nc: %s %s)", x.Err, pn.exitDesc(), strings.TrimSpace(ncErr.String()))
		}
		return x.Bytes, 0, false, fmt.Errorf("sink: %w", x.Err)
	}
	return x.Bytes, x.End.Sub(x.Start), x.Capped, nil
}

func (b *bench) download(t *target) (int64, time.Duration, bool, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, 0, false, err
	}
	defer pr.Close()
	var ncErr bytes.Buffer
	nc := exec.Command("nc", ncArgs(t, t.source)...) // stdin: /dev/null
	nc.Stdout, nc.Stderr = pw, &ncErr
	pn, err := start("nc", nc)
	pw.Close()
	if err != nil {
		return 0, 0, false, err
	}
	defer func() {
		if !pn.wait(10 * time.Second) {
			pn.kill()
		}
	}()
	_ = pr.SetReadDeadline(time.Now().Add(cfg.bulkCap + time.Minute))
	buf := make([]byte, 1<<20)
	var got int64
	var rerr error
	for {
		n, err := pr.Read(buf)
		got += int64(n)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				rerr = err
			}
			break
		}
	}
	end := time.Now()
	var x xfer
	select {
	case x = <-b.srv.sent:
	case <-time.After(5 * time.Second):
		return got, 0, false, fmt.Errorf("the source saw no connection (nc: %s %s)", pn.exitDesc(), strings.TrimSpace(ncErr.String()))
	}
	switch {
	case rerr != nil:
		return got, 0, false, fmt.Errorf("reading nc's output: %w", rerr)
	case x.Err != nil:
		return got, 0, false, fmt.Errorf("source: %w", x.Err)
	case got != x.Bytes:
		pn.wait(3 * time.Second)
		return got, 0, false, fmt.Errorf("received %d of the %d bytes sent (nc: %s %s)", got, x.Bytes, pn.exitDesc(), strings.TrimSpace(ncErr.String()))
	}
	return got, end.Sub(x.Start), x.Capped, nil
}

// ---- 2: connect + echo latency ----

// echoOnce is one fresh connection: SOCKS CONNECT to the echo service (or a
// plain TCP connect for raw), one byte there and back.
func echoOnce(t *target) (time.Duration, error) {
	t0 := time.Now()
	c, err := socksDial(t.proxy, t.host, t.echo, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(t0.Add(10 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return 0, err
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return 0, fmt.Errorf("echo: %w", err)
	}
	if b[0] != 'x' {
		return 0, fmt.Errorf("echo sent back %q", b[0])
	}
	return time.Since(t0), nil
}

func (b *bench) latency(res *results) error {
	res.lat = map[string][]time.Duration{}
	res.latFail = map[string]int{}
	res.latErr = map[string]string{}
	res.latProcs[0] = b.rolesProcs()
	for i := range cfg.warmup + cfg.samples {
		for _, t := range b.targets {
			d, err := echoOnce(t)
			if i < cfg.warmup {
				continue
			}
			if err != nil {
				res.latFail[t.name]++
				res.latErr[t.name] = err.Error()
				continue
			}
			res.lat[t.name] = append(res.lat[t.name], d)
		}
	}
	for _, t := range b.targets {
		s := res.lat[t.name]
		last := ""
		if e := res.latErr[t.name]; e != "" {
			last = "; last error: " + e
		}
		progress("%-15s connect+echo median %s  p90 %s  (%d samples, %d failed%s)", t.name,
			fmtDur(quantileDur(s, 0.5)), fmtDur(quantileDur(s, 0.9)), len(s), res.latFail[t.name], last)
	}
	res.latProcs[1] = b.rolesProcs()
	b.latencyIdle(res)
	res.latProcs[2] = b.rolesProcs()
	progress("cores of the tunnel's roles: before %s; after the back-to-back samples %s; after the idle ones %s",
		res.latProcs[0], res.latProcs[1], res.latProcs[2])
	return b.alive()
}

// latencyIdle takes the connect + echo samples of the main table's paths
// again, each after cfg.idleGap with nothing running: what a user sees who
// opens a connection after a pause, when the processes on the path (and the
// CPUs) have gone to sleep. Back-to-back samples keep them awake, which
// flatters every path, most of all those with more processes and threads
// on them to wake.
func (b *bench) latencyIdle(res *results) {
	res.latIdle = map[string][]time.Duration{}
	res.latIdleFail = map[string]int{}
	if cfg.idleSamples == 0 {
		return
	}
	var ts []*target
	for _, t := range b.targets {
		if slices.Contains(columns, t.name) {
			ts = append(ts, t)
		}
	}
	progress("== 2b. connect + 1-byte echo after %s idle: %d samples per path, interleaved", cfg.idleGap, cfg.idleSamples)
	lastErr := map[string]string{}
	for range cfg.idleSamples {
		for _, t := range ts {
			time.Sleep(cfg.idleGap)
			d, err := echoOnce(t)
			if err != nil {
				res.latIdleFail[t.name]++
				lastErr[t.name] = "; last error: " + err.Error()
				continue
			}
			res.latIdle[t.name] = append(res.latIdle[t.name], d)
		}
	}
	for _, t := range ts {
		s := res.latIdle[t.name]
		progress("%-15s connect+echo after %s idle: median %s  p90 %s  (%d samples, %d failed%s)", t.name, cfg.idleGap,
			fmtDur(quantileDur(s, 0.5)), fmtDur(quantileDur(s, 0.9)), len(s), res.latIdleFail[t.name], lastErr[t.name])
	}
}

// rolesProcs says how many cores (GOMAXPROCS) each of the tunnel's roles
// runs its Go code on now, as `tunnel status` reports it: with --procs
// auto that depends on how busy each was in the last seconds.
func (b *bench) rolesProcs() string {
	var parts []string
	for _, r := range []struct{ name, home, role string }{
		{"socksd direct", b.direct.home, "socksd"},
		{"socksd relayed", b.relayed.home, "socksd"},
		{"agent", b.direct.devHome, "publish"},
	} {
		d, err := roleStatus(r.home, r.role)
		parts = append(parts, r.name+" "+procsOf(d, err))
	}
	return strings.Join(parts, ", ")
}

// ---- 3: concurrent streams ----

// concHandshakes bounds the SOCKS handshakes in flight in the concurrent
// streams test: under the per-user cap of socksd's pre-authorization.
const concHandshakes = 32

type concResult struct {
	name    string
	n, ok   int
	wall    time.Duration
	errs    map[string]int
	rss     []rssFigure // socksd, agent (and relay)
	pathBad string
	relayed bool
}

// rssFigure is one process's VmRSS, KiB: before, peak (polled every 20 ms)
// and after (1 s after the last stream ended).
type rssFigure struct {
	role                string
	before, peak, after int64
}

func (b *bench) concurrent(t *target) (concResult, error) {
	r := concResult{name: t.name, n: cfg.streams, errs: map[string]int{}, relayed: t.wantPath == "relayed"}
	watch := []struct {
		role string
		p    *proc
	}{{"socksd", t.socksd}, {"agent", b.device}}
	if r.relayed {
		watch = append(watch, struct {
			role string
			p    *proc
		}{"relay", b.relay})
	}
	r.rss = make([]rssFigure, len(watch))
	for i, w := range watch {
		v, err := rssKiB(w.p.pid())
		if err != nil {
			return r, err
		}
		r.rss[i] = rssFigure{role: w.role, before: v, peak: v}
	}
	var mu sync.Mutex
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopPoll:
				return
			case <-tick.C:
			}
			for i, w := range watch {
				if v, err := rssKiB(w.p.pid()); err == nil {
					mu.Lock()
					r.rss[i].peak = max(r.rss[i].peak, v)
					mu.Unlock()
				}
			}
		}
	}()

	payload := make([]byte, cfg.streamBytes)
	_, _ = rand.Read(payload)
	gate := make(chan struct{})
	// At most concHandshakes SOCKS handshakes in flight, as a real client
	// paces them (Chrome: 32 sockets per proxy): socksd closes, unanswered,
	// connections of one user beyond socks.DefaultPreAuthPerSource that
	// are not yet admitted. The streams themselves all run at once.
	handshakes := make(chan struct{}, concHandshakes)
	var wg sync.WaitGroup
	for range cfg.streams {
		wg.Go(func() {
			<-gate
			err := streamOnce(t, payload, handshakes)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				r.ok++
				return
			}
			msg := err.Error()
			if len(msg) > 80 {
				msg = msg[:80] + "…"
			}
			r.errs[msg]++
		})
	}
	t0 := time.Now()
	close(gate)
	wg.Wait()
	r.wall = time.Since(t0)
	time.Sleep(time.Second)
	close(stopPoll)
	<-polled
	for i, w := range watch {
		if v, err := rssKiB(w.p.pid()); err == nil {
			r.rss[i].after = v
		}
	}
	if p, err := b.pathOf(t); err != nil || p != t.wantPath {
		r.pathBad = fmt.Sprintf("%s %v", p, err)
	}
	progress("%-15s %d/%d streams ok in %.2f s%s", t.name, r.ok, r.n, r.wall.Seconds(), errText(r.errs))
	for _, f := range r.rss {
		progress("%-15s   %-6s RSS %s → peak %s → %s", t.name, f.role, mib(f.before), mib(f.peak), mib(f.after))
	}
	return r, b.alive()
}

func errText(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	type kv struct {
		k string
		v int
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v })
	var parts []string
	for i, e := range l {
		if i == 3 {
			break
		}
		parts = append(parts, fmt.Sprintf("%d× %s", e.v, e.k))
	}
	return "; errors: " + strings.Join(parts, "; ")
}

// streamOnce: CONNECT to the echo service, send payload, half-close, read
// it all back and compare.
func streamOnce(t *target, payload []byte, handshakes chan struct{}) error {
	handshakes <- struct{}{}
	c, err := socksDial(t.proxy, t.host, t.echo, 30*time.Second)
	<-handshakes
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		werr <- err
	}()
	got, err := io.ReadAll(io.LimitReader(c, int64(len(payload))+1))
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo: got %d bytes back, not the %d sent", len(got), len(payload))
	}
	return nil
}

// ---- 4: relay memory ----

// trimSettle is a rest long enough for a role's trim after work to have
// come (idleStreams), if the work ended when the rest began. rssStill and
// rssSettleMax bound the wait when it had not: the readings are taken once
// no role's RSS moved by more than rssStillKiB for rssStill, longer than a
// trim's 2 s tick, so the trim of work still ending came before them. (A
// trim after work gives back MiBs; rest's garbage grows a role by a few
// KiB a second.)
const (
	trimSettle   = 5 * time.Second
	rssStill     = 3 * time.Second
	rssStillKiB  = 256
	rssSettleMax = 30 * time.Second
)

// settledRSS waits at least trimSettle, then until the RSS of every one of
// pids has stood still for rssStill (or rssSettleMax has passed, which it
// says), and returns their RSS, KiB.
func settledRSS(pids []int) ([]int64, error) {
	const every = 250 * time.Millisecond
	start := time.Now()
	// ref is each one's RSS when it last moved by more than rssStillKiB
	// (at moved); cur is its latest reading, which is what is returned.
	ref := make([]int64, len(pids))
	cur := make([]int64, len(pids))
	moved := make([]time.Time, len(pids))
	for {
		now := time.Now()
		still := now.Sub(start) >= trimSettle
		for i, pid := range pids {
			v, err := rssKiB(pid)
			if err != nil {
				return nil, err
			}
			cur[i] = v
			if d := v - ref[i]; d > rssStillKiB || d < -rssStillKiB {
				ref[i], moved[i] = v, now
			}
			still = still && now.Sub(moved[i]) >= rssStill
		}
		if still {
			return cur, nil
		}
		if now.Sub(start) >= rssSettleMax {
			progress("RSS still moving after %s; reading it as it is", rssSettleMax)
			return cur, nil
		}
		time.Sleep(every)
	}
}

type idleStreamResult struct {
	n   int
	rss []rssFigure // before and after only
}

// perStream is the RSS each role gained per idle stream, "socksd 5.3 ·
// agent 0.1 · …", in KiB.
func (r idleStreamResult) perStream() string {
	var parts []string
	for _, f := range r.rss {
		parts = append(parts, fmt.Sprintf("%s %.1f", f.role, float64(f.after-f.before)/float64(r.n)))
	}
	return strings.Join(parts, " · ")
}

// idleStreams holds cfg.idleStreams relayed streams open and idle and
// reports the memory it costs the relay, the socksd and the agent.
//
// Both readings come after a rest (settledRSS): a role gives back the
// garbage of a burst of work at the end of the first quiet 2 s tick after
// it (cmd/roles/memtrim.go), so 2–4 s after the work. A reading before
// that trim and one after it would count the garbage of the work before
// (the concurrent streams, or opening these) against the streams, either
// way: one round-sixteen table read -28.5 KiB per stream for the agent,
// and one of round eighteen -46.1 for the socksd, whose trim after the
// busy neighbour's download came more than 5 s after the part began.
func (b *bench) idleStreams() (idleStreamResult, error) {
	t := b.relayed
	r := idleStreamResult{n: cfg.idleStreams}
	watch := []struct {
		role string
		p    *proc
	}{{"relay", b.relay}, {"socksd", t.socksd}, {"agent", b.device}}
	pids := make([]int, len(watch))
	for i, w := range watch {
		pids[i] = w.p.pid()
	}
	before, err := settledRSS(pids)
	if err != nil {
		return r, err
	}
	r.rss = make([]rssFigure, len(watch))
	for i, w := range watch {
		r.rss[i] = rssFigure{role: w.role, before: before[i]}
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range cfg.idleStreams {
		c, err := socksDial(t.proxy, t.host, t.echo, 10*time.Second)
		if err != nil {
			return r, fmt.Errorf("idle relayed stream %d: %w", len(conns)+1, err)
		}
		conns = append(conns, c)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		var one [1]byte
		if _, err := c.Write([]byte{'i'}); err != nil {
			return r, err
		}
		if _, err := io.ReadFull(c, one[:]); err != nil {
			return r, fmt.Errorf("idle relayed stream %d: echo: %w", len(conns), err)
		}
		_ = c.SetDeadline(time.Time{})
	}
	after, err := settledRSS(pids)
	if err != nil {
		return r, err
	}
	for i, w := range watch {
		v := after[i]
		r.rss[i].after = v
		progress("%d idle relayed streams: %-6s RSS %s → %s: %+.1f KiB per stream", r.n, w.role, mib(r.rss[i].before), mib(v), float64(v-r.rss[i].before)/float64(r.n))
	}
	return r, b.alive()
}

type devResult struct {
	n             int
	before, after int64
	// afterIdle is the RSS once more after idleFor: a relay that took a
	// burst of registration handshakes (devices on leases close their
	// connections at once) gives the garbage back to the system over
	// seconds, not at once.
	afterIdle int64
	register  time.Duration
	// The relay's CPU seconds over idleFor once the devices are settled:
	// what keeping idle devices costs (their keep-alives, its pings).
	idleCPU float64
	idleFor time.Duration
}

// devIdleFor is how long the relay's idle CPU is counted: long enough for
// CPU ticks of 10 ms to add up to a figure (300 devices idle for 20 s took
// tenths of a second).
const devIdleFor = 20 * time.Second

// rows gives the relay-per-idle-device rows, through row as in the
// table's other rows, with the value in its one cell.
func (d devResult) rows(row func(measure, value, target string)) {
	per := float64(d.after-d.before) / float64(d.n)
	row(fmt.Sprintf("relay RSS per idle device (%d devices, registered in %.1f s)", d.n, d.register.Seconds()),
		fmt.Sprintf("%.1f KiB %s (%.1f → %.1f MiB)", per, check(per <= 48), float64(d.before)/1024, float64(d.after)/1024), "≤ 48 KiB")
	if d.idleFor > 0 {
		// % of one core per 1,000 devices: CPU-s per second, per device, × 1000 × 100.
		pct := d.idleCPU / d.idleFor.Seconds() / float64(d.n) * 1000 * 100
		row(fmt.Sprintf("relay CPU for idle devices (%d devices, %.0f s)", d.n, d.idleFor.Seconds()),
			fmt.Sprintf("%.2f CPU-s: %.1f %% of one core per 1,000 devices", d.idleCPU, pct), "")
		perIdle := float64(d.afterIdle-d.before) / float64(d.n)
		row(fmt.Sprintf("… relay RSS per idle device %.0f s later", d.idleFor.Seconds()),
			fmt.Sprintf("%.1f KiB (%.1f MiB)", perIdle, float64(d.afterIdle)/1024), "")
	}
}

// idleDevices starts a fresh relay, registers cfg.devices devices of this
// process at it, and reports its RSS before and after.
func (b *bench) idleDevices() (devResult, error) {
	r := devResult{n: cfg.devices}
	home := filepath.Join(b.work, "relay-idle")
	id, err := b.tunnelID(home)
	if err != nil {
		return r, err
	}
	up, err := freePortNet("udp")
	if err != nil {
		return r, err
	}
	p, err := daemon("relay-idle", b.work, b.bin, "--home", home, "relay", "--listen", addr(up))
	if err != nil {
		return r, err
	}
	defer p.stop(5 * time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(p.logTail(20), "relay listening") {
		if err := p.alive(); err != nil {
			return r, err
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("relay-idle: not listening after 15 s; log:\n%s", p.logTail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	if r.before, err = rssKiB(p.pid()); err != nil {
		return r, err
	}
	ra, err := resolver.ParseRelayAddr(id + "@" + addr(up))
	if err != nil {
		return r, err
	}
	t0 := time.Now()
	devs, err := startIdleDevices(cfg.devices, ra, 90*time.Second)
	if err != nil {
		return r, err
	}
	defer devs.stop()
	r.register = time.Since(t0)
	// Past one relay ping period (5 s), so the steady state is measured.
	time.Sleep(8 * time.Second)
	if err := p.alive(); err != nil {
		return r, err
	}
	if r.after, err = rssKiB(p.pid()); err != nil {
		return r, err
	}
	progress("%d idle devices registered in %.2f s; relay RSS %s → %s: %.1f KiB per device", r.n, r.register.Seconds(),
		mib(r.before), mib(r.after), float64(r.after-r.before)/float64(r.n))
	cpu0, t1 := cpuSeconds(p.pid()), time.Now()
	time.Sleep(devIdleFor)
	if err := p.alive(); err != nil {
		return r, err
	}
	r.idleCPU, r.idleFor = cpuSeconds(p.pid())-cpu0, time.Since(t1)
	if r.afterIdle, err = rssKiB(p.pid()); err != nil {
		return r, err
	}
	progress("relay CPU with %d idle devices: %.2f s in %.1f s; RSS then %s: %.1f KiB per device", r.n, r.idleCPU, r.idleFor.Seconds(),
		mib(r.afterIdle), float64(r.afterIdle-r.before)/float64(r.n))
	return r, nil
}

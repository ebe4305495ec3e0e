//go:build linux

package main

// 6. Footprint: what an idle agent and an idle socksd cost, as a user of a
// small board sees it in `top`. A fresh `tunnel publish` with two ports and
// a fresh `tunnel socksd` (both on the bench's relay), one client
// connection through them to the echo port, one byte echoed, then held
// idle; after -footprint-settle, VmRSS of each from /proc/PID/status, with
// its two parts: RssAnon (the Go heap, stacks and runtime) and RssFile
// (the pages of the binary and of the C library that are mapped in:
// clean, shared between processes of the same binary, and the first pages
// the kernel reclaims under pressure). Then, over -footprint-window more of
// the same rest, what each costs the machine while it waits: how often its
// threads are woken (on a laptop or a board on batteries, each wake-up
// takes a core out of its sleep state) and the CPU time they run, from the
// kernel's scheduler statistics (threadTimes), and their RSS again at its
// end: rest makes a little garbage, which the roles trim once it adds up
// (cmd/roles, garbageTrim), so a figure that still grows at the end of the
// window is not the role's steady size.

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"
)

var (
	footprintSettle = flag.Duration("footprint-settle", 10*time.Second, "idle time before the footprint rows are read")
	footprintWindow = flag.Duration("footprint-window", 10*time.Second, "idle time over which the wake-ups and CPU time of the idle agent and socksd are counted, after the settle")
)

// Targets of issue 16, KiB.
const (
	agentRSSTarget  = 12 << 10
	socksdRSSTarget = 16 << 10
)

// memFigure is one process's memory, KiB, from /proc/PID/status.
type memFigure struct {
	rss, anon, file int64
}

// idleCost is what an idle process cost over a window: threads put on a
// CPU, and their CPU time.
type idleCost struct {
	wakes  int64
	cpu    time.Duration
	window time.Duration
}

// perSecond and perMinute scale the window's counts.
func (c idleCost) perSecond() float64 { return float64(c.wakes) / c.window.Seconds() }
func (c idleCost) perMinute() time.Duration {
	return time.Duration(float64(c.cpu) * float64(time.Minute) / float64(c.window))
}

type footprintResult struct {
	agent, socksd memFigure
	// agentLater and socksdLater are read at the end of the window.
	agentLater, socksdLater memFigure
	agentIdle               idleCost
	socksdIdle              idleCost
	path                    string // the idle connection's path, per `tunnel status`
}

func (b *bench) footprint() (footprintResult, error) {
	var r footprintResult
	listen := ""
	for i, a := range b.relay.cmd.Args {
		if a == "--listen" && i+1 < len(b.relay.cmd.Args) {
			listen = b.relay.cmd.Args[i+1]
		}
	}
	relayAddr := b.relayID + "@" + listen

	devHome := filepath.Join(b.work, "device-idle")
	devID, err := b.tunnelID(devHome)
	if err != nil {
		return r, err
	}
	dev, err := daemon("device-idle", b.work, b.bin, "--home", devHome, "publish", "--relay", relayAddr,
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.sink), sinkRemote),
		"-public", fmt.Sprintf("127.0.0.1:%d:%d", port(b.srv.echo), echoRemote))
	if err != nil {
		return r, err
	}
	defer dev.stop(5 * time.Second)
	home := filepath.Join(b.work, "socksd-idle")
	if _, err := b.tunnelID(home); err != nil {
		return r, err
	}
	sp, err := freePort()
	if err != nil {
		return r, err
	}
	socksd, err := daemon("socksd-idle", b.work, b.bin, "--home", home, "socksd", "--relay", relayAddr, "--listen", addr(sp))
	if err != nil {
		return r, err
	}
	defer socksd.stop(5 * time.Second)
	if err := waitTCP(addr(sp), 15*time.Second, socksd); err != nil {
		return r, err
	}

	// The device may still be registering: retry the first connection.
	t := &target{name: "idle", proxy: addr(sp), host: devID + ".tunnel", echo: echoRemote, home: home, devHome: devHome, socksd: socksd}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := socksDial(t.proxy, t.host, t.echo, 10*time.Second)
		if err == nil {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			var one [1]byte
			if _, err := c.Write([]byte{'f'}); err != nil {
				return r, fmt.Errorf("idle connection: %w", err)
			}
			if _, err := io.ReadFull(c, one[:]); err != nil {
				return r, fmt.Errorf("idle connection: echo: %w", err)
			}
			_ = c.SetDeadline(time.Time{})
			break
		}
		for _, p := range []*proc{dev, socksd} {
			if e := p.alive(); e != nil {
				return r, e
			}
		}
		if time.Now().After(deadline) {
			return r, fmt.Errorf("footprint: no connection through %s after 20 s: %v", t.proxy, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	progress("footprint: agent (2 ports) and socksd up, one idle connection; settling %s", *footprintSettle)
	time.Sleep(*footprintSettle)
	for _, p := range []*proc{dev, socksd} {
		if err := p.alive(); err != nil {
			return r, err
		}
	}
	if r.agent, err = memOf(dev.pid()); err != nil {
		return r, err
	}
	if r.socksd, err = memOf(socksd.pid()); err != nil {
		return r, err
	}
	if r.agentIdle, r.socksdIdle, err = idleCosts(dev, socksd, *footprintWindow); err != nil {
		return r, err
	}
	if r.agentLater, err = memOf(dev.pid()); err != nil {
		return r, err
	}
	if r.socksdLater, err = memOf(socksd.pid()); err != nil {
		return r, err
	}
	save := b.deviceID
	b.deviceID = devID // pathOf looks for this device's peer
	r.path, err = b.pathOf(t)
	b.deviceID = save
	if err != nil {
		r.path = "? (" + err.Error() + ")"
	}
	for _, f := range []struct {
		role string
		m    memFigure
	}{{"agent", r.agent}, {"socksd", r.socksd}} {
		progress("footprint: idle %-6s RSS %s (anon %s, file %s), path %s", f.role, mib(f.m.rss), mib(f.m.anon), mib(f.m.file), r.path)
	}
	for _, f := range []struct {
		role string
		c    idleCost
	}{{"agent", r.agentIdle}, {"socksd", r.socksdIdle}} {
		progress("footprint: idle %-6s %d wake-ups and %s of CPU in %s", f.role, f.c.wakes, f.c.cpu.Round(time.Microsecond), f.c.window)
	}
	progress("footprint: RSS %s later: agent %s, socksd %s", *footprintWindow, mib(r.agentLater.rss), mib(r.socksdLater.rss))
	return r, nil
}

// idleCosts counts what the agent and the socksd cost over window, both
// at once.
func idleCosts(agent, socksd *proc, window time.Duration) (a, s idleCost, err error) {
	read := func() (v [4]int64, err error) {
		if v[0], v[1], err = threadTimes(agent.pid()); err != nil {
			return v, err
		}
		v[2], v[3], err = threadTimes(socksd.pid())
		return v, err
	}
	before, err := read()
	if err != nil {
		return a, s, err
	}
	time.Sleep(window)
	for _, p := range []*proc{agent, socksd} {
		if err := p.alive(); err != nil {
			return a, s, err
		}
	}
	after, err := read()
	if err != nil {
		return a, s, err
	}
	a = idleCost{cpu: time.Duration(after[0] - before[0]), wakes: after[1] - before[1], window: window}
	s = idleCost{cpu: time.Duration(after[2] - before[2]), wakes: after[3] - before[3], window: window}
	return a, s, nil
}

// memOf reads VmRSS, RssAnon and RssFile of pid, KiB.
func memOf(pid int) (memFigure, error) {
	v, err := statusKiB(pid, "VmRSS", "RssAnon", "RssFile")
	if err != nil {
		return memFigure{}, err
	}
	return memFigure{rss: v[0], anon: v[1], file: v[2]}, nil
}

// rows adds the footprint rows to the table, in the direct column (the
// idle connection goes direct once punched; the path is in the label). It
// is called for a footprint measured, over a window main has checked is
// positive.
func (f footprintResult) rows(row func(measure string, cells []string, target string)) {
	cell := func(m memFigure, target int64) string {
		return fmt.Sprintf("%.1f MiB %s (anon %.1f + file %.1f)", float64(m.rss)/1024, check(m.rss <= target), float64(m.anon)/1024, float64(m.file)/1024)
	}
	settle := footprintSettle.String()
	row(fmt.Sprintf("idle agent RSS: 2 ports, 1 idle client connection (%s), after %s", f.path, settle),
		[]string{dash, dash, dash, cell(f.agent, agentRSSTarget), dash}, "≤ 12 MiB")
	row(fmt.Sprintf("idle socksd RSS: 1 idle client connection, after %s", settle),
		[]string{dash, dash, dash, cell(f.socksd, socksdRSSTarget), dash}, "≤ 16 MiB")
	cost := func(c idleCost) string {
		return fmt.Sprintf("%.1f/s · %.1f ms", c.perSecond(), float64(c.perMinute())/float64(time.Millisecond))
	}
	row(fmt.Sprintf("… wake-ups (threads put on a CPU) per second · CPU per minute, idle, over the next %s: agent · socksd", f.agentIdle.window),
		[]string{dash, dash, dash, cost(f.agentIdle) + " · " + cost(f.socksdIdle), dash}, "")
	row(fmt.Sprintf("… RSS MiB at the end of those %s: agent · socksd", f.agentIdle.window),
		[]string{dash, dash, dash, fmt.Sprintf("%.1f · %.1f", float64(f.agentLater.rss)/1024, float64(f.socksdLater.rss)/1024), dash}, "")
}

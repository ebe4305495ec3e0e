//go:build linux

package main

// Child processes (tunnel daemons, sshd, ssh -D, nc) and what /proc says
// about them: resident memory and CPU time. Every child runs in its own
// process group and is registered, so that an error, a timeout or ctrl-C
// ends all of them (cleanup in main.go).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a child process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string // "" when its output is not kept

	done    chan struct{}
	waitErr error // valid after done
}

var children struct {
	sync.Mutex
	procs   []*proc
	stopped bool // cleanup began: start nothing more
}

// cleanEnv is the environment without TUNNEL_* settings of whoever runs the
// bench, so that they cannot change what is measured.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TUNNEL_") {
			env = append(env, kv)
		}
	}
	return env
}

// start starts cmd in its own process group and registers it.
func start(name string, cmd *exec.Cmd) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if cmd.Env == nil {
		cmd.Env = cleanEnv()
	}
	children.Lock()
	defer children.Unlock()
	if children.stopped {
		return nil, errors.New("shutting down")
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	children.procs = append(children.procs, p)
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// daemon starts a long-running process whose output goes to logDir/name.log.
func daemon(name, logDir, bin string, args ...string) (*proc, error) {
	return daemonEnv(name, logDir, nil, bin, args...)
}

// daemonEnv is daemon with env added to the clean environment.
func daemonEnv(name, logDir string, env []string, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(cleanEnv(), env...)
	p, err := start(name, cmd)
	if err != nil {
		return nil, err
	}
	p.logPath = logPath
	progress("started %s (pid %d): %s%s %s", name, p.pid(), strings.Join(append(env, ""), " "), bin, strings.Join(args, " "))
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit by itself.
func (p *proc) wait(timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		return false
	}
}

// stop sends SIGTERM to the process group, then SIGKILL after grace. A
// process that has exited (and was reaped) is left alone: its PID may
// already belong to someone else.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	if !p.wait(grace) {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		p.wait(5 * time.Second)
	}
}

// kill kills the process group at once.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	p.wait(5 * time.Second)
}

func (p *proc) exitDesc() string {
	if !p.exited() {
		return "still running"
	}
	if p.waitErr == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	return p.waitErr.Error()
}

// logTail is the end of the process's log, for error messages.
func (p *proc) logTail(lines int) string {
	if p.logPath == "" {
		return ""
	}
	b, _ := os.ReadFile(p.logPath)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// alive fails when the process has exited, with the end of its log.
func (p *proc) alive() error {
	if !p.exited() {
		return nil
	}
	return fmt.Errorf("%s (pid %d) exited: %s; log %s:\n%s", p.name, p.pid(), p.exitDesc(), p.logPath, p.logTail(30))
}

// stopChildren ends every registered child, newest first. Processes that
// left their group (sshd's per-connection children call setsid) are found
// by walking /proc from the ones registered.
func stopChildren() {
	children.Lock()
	children.stopped = true
	procs := append([]*proc(nil), children.procs...)
	children.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		if p.exited() {
			continue
		}
		for _, k := range descendants(p.pid()) {
			_ = syscall.Kill(k, syscall.SIGTERM)
		}
		p.stop(3 * time.Second)
	}
}

// ---- /proc ----

// rssKiB is VmRSS of pid in KiB.
func rssKiB(pid int) (int64, error) {
	v, err := statusKiB(pid, "VmRSS")
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// statusKiB reads the named fields of /proc/PID/status (VmRSS, RssAnon,
// …), KiB, in the order named; a field missing is an error.
func statusKiB(pid int, names ...string) ([]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := make([]int64, len(names))
	found := 0
	for _, line := range strings.Split(string(b), "\n") {
		k, rest, ok := strings.Cut(line, ":")
		i := slices.Index(names, k)
		if !ok || i < 0 {
			continue
		}
		f := strings.Fields(rest)
		if len(f) < 1 {
			continue
		}
		if out[i], err = strconv.ParseInt(f[0], 10, 64); err != nil {
			return nil, fmt.Errorf("/proc/%d/status %s: %w", pid, k, err)
		}
		found++
	}
	if found != len(names) {
		return nil, fmt.Errorf("/proc/%d/status: %s not all there", pid, strings.Join(names, ", "))
	}
	return out, nil
}

// threadTimes sums, over pid's threads, the time they ran and the times
// they were put on a CPU (/proc/PID/task/TID/schedstat: run ns, wait ns,
// timeslices; the kernel's scheduler statistics, in nanoseconds, where
// utime and stime count whole clock ticks). Of an idle process, the
// timeslices are its wake-ups.
func threadTimes(pid int) (runNs, timeslices int64, err error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // the thread exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 3 {
			return 0, 0, fmt.Errorf("odd /proc/%d/task/%s/schedstat: %q", pid, t.Name(), b)
		}
		run, err1 := strconv.ParseInt(f[0], 10, 64)
		n, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/task/%s/schedstat: %w", pid, t.Name(), err)
		}
		runNs += run
		timeslices += n
	}
	return runNs, timeslices, nil
}

// statFields returns the fields of /proc/PID/stat after the command name
// (index 0 is the state, field 3 of proc(5)).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("odd /proc/%d/stat", pid)
	}
	return strings.Fields(s[i+1:]), nil
}

// clockTick is USER_HZ, the unit of utime and stime.
var clockTick = func() float64 {
	if out, err := exec.Command("getconf", "CLK_TCK").Output(); err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}()

// cpuSeconds is utime+stime of pid (fields 14 and 15 of proc(5)).
func cpuSeconds(pid int) float64 {
	f, err := statFields(pid)
	if err != nil || len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTick
}

// descendants lists every live process below pid.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(p)
		if err != nil || len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	var out []int
	for p := range parent {
		for q, hops := parent[p], 0; q != 0 && hops < 64; q, hops = parent[q], hops+1 {
			if q == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// treeCPUSeconds is the CPU time of pid and all its live descendants.
func treeCPUSeconds(pid int) float64 {
	t := cpuSeconds(pid)
	for _, d := range descendants(pid) {
		t += cpuSeconds(d)
	}
	return t
}

// machineBusySeconds is the CPU time all CPUs spent busy since boot (user,
// nice, system, irq, softirq, steal from /proc/stat).
func machineBusySeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0
	}
	var t float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} {
		v, _ := strconv.ParseFloat(f[i], 64)
		t += v
	}
	return t / clockTick
}

// ownTreeSeconds is the CPU time of this process and everything it started:
// its own, its reaped children's (cutime, cstime), and its live
// descendants' (each with its own reaped children).
func ownTreeSeconds() float64 {
	total := func(pid int) float64 {
		f, err := statFields(pid)
		if err != nil || len(f) < 15 {
			return 0
		}
		var t float64
		for _, i := range []int{11, 12, 13, 14} {
			v, _ := strconv.ParseFloat(f[i], 64)
			t += v
		}
		return t / clockTick
	}
	self := os.Getpid()
	t := total(self)
	for _, d := range descendants(self) {
		t += total(d)
	}
	return t
}

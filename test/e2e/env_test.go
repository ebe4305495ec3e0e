//go:build linux

package e2e

// The shared fixture most scenarios use, set up on first use and torn down by
// TestMain: one sshd, the local servers, one socksd with its embedded
// rendezvous node, and one device (`tunnel publish`) with several ports:
//
//	<id>.tunnel:22   -> sshd        (-public SSHDPORT:22)
//	<id>.tunnel:8080 -> HTTP server (-public 127.0.0.1:HTTPPORT:8080)
//	<id>.tunnel:9999 -> nothing     (-public 127.0.0.1:CLOSEDPORT:9999)
//	<id>.tunnel:7000 -> byte counter(-public 127.0.0.1:COUNTPORT:7000)
//	<id>.tunnel:7001 -> echo        (-public 127.0.0.1:ECHOPORT:7001)

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

type sharedEnv struct {
	dir  string
	sshd *sshServer
	http *httpServer
	cnt  *tcpServer
	echo *tcpServer

	socksd    *proc
	socksAddr string // 127.0.0.1:PORT of the SOCKS listener
	relayAddr string // 127.0.0.1:PORT of socksd's embedded rendezvous node (UDP)
	socksHome string

	device     *proc
	deviceID   string
	deviceHome string
	closedPort int
}

var shared struct {
	once sync.Once
	env  *sharedEnv
	err  error
}

// getEnv returns the shared fixture, setting it up on first use; a test that
// fails while using it gets the fixture's logs (from the test's start on).
func getEnv(t *testing.T) *sharedEnv {
	t.Helper()
	requireSystem(t)
	shared.once.Do(func() {
		start := time.Now()
		shared.env, shared.err = setupShared()
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "e2e: shared fixture ready in %s: device %s, socks %s, relay %s, sshd 127.0.0.1:%d\n",
				time.Since(start).Round(time.Millisecond), shared.env.deviceID, shared.env.socksAddr,
				shared.env.relayAddr, shared.env.sshd.port)
		}
	})
	if shared.err != nil {
		t.Fatalf("shared fixture setup failed: %v", shared.err)
	}
	e := shared.env
	if err := e.alive(); err != nil {
		t.Fatalf("shared fixture broken before this test: %v", err)
	}
	e.watch(t)
	return e
}

func setupShared() (e *sharedEnv, err error) {
	e = &sharedEnv{}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w%s", err, e.logs(nil))
			e.teardown()
			e = nil
		}
	}()
	if e.dir, err = os.MkdirTemp("", "tunnel-e2e-shared-"); err != nil {
		return e, err
	}
	if e.sshd, err = startSSHD(); err != nil {
		return e, err
	}
	if e.http, err = startHTTPServer(); err != nil {
		return e, err
	}
	if e.cnt, err = startTCPServer(countHandler); err != nil {
		return e, err
	}
	if e.echo, err = startTCPServer(echoHandler); err != nil {
		return e, err
	}
	if e.closedPort, err = closedPort(); err != nil {
		return e, err
	}

	socksPort, err := freePortErr("tcp")
	if err != nil {
		return e, err
	}
	relayPort, err := freePortErr("udp")
	if err != nil {
		return e, err
	}
	e.socksAddr, e.relayAddr = addr(socksPort), addr(relayPort)
	e.socksHome = filepath.Join(e.dir, "socksd-home")
	e.deviceHome = filepath.Join(e.dir, "device-home")
	for _, d := range []string{e.socksHome, e.deviceHome} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return e, err
		}
	}

	e.socksd, err = spawn("socksd", e.dir, nil, tunnelBin, tunnelArgs(e.socksHome,
		"socksd", "--listen", e.socksAddr, "--relay-listen", e.relayAddr)...)
	if err != nil {
		return e, err
	}
	if err := waitTCP(e.socksAddr, 15*time.Second, e.socksd); err != nil {
		return e, fmt.Errorf("socksd: %w", err)
	}

	r := runTunnel(20*time.Second, nil, "--home", e.deviceHome, "id")
	e.deviceID = strings.TrimSpace(string(r.Stdout))
	if r.Code != 0 || !idRE.MatchString(e.deviceID) {
		return e, fmt.Errorf("tunnel id for the device: %s", r)
	}
	e.device, err = spawn("publish", e.dir, nil, tunnelBin, tunnelArgs(e.deviceHome,
		"publish", "--relay", e.relayAddr,
		"-public", strconv.Itoa(e.sshd.port)+":22",
		"-public", fmt.Sprintf("127.0.0.1:%d:8080", e.http.port),
		"-public", fmt.Sprintf("127.0.0.1:%d:9999", e.closedPort),
		"-public", fmt.Sprintf("127.0.0.1:%d:7000", e.cnt.port),
		"-public", fmt.Sprintf("127.0.0.1:%d:7001", e.echo.port),
	)...)
	if err != nil {
		return e, err
	}
	if _, err := waitReachable(e.socksAddr, e.deviceID+".tunnel", 22, 15*time.Second); err != nil {
		return e, fmt.Errorf("published device never became reachable: %w", err)
	}
	return e, e.alive()
}

// alive reports a shared process that died.
func (e *sharedEnv) alive() error {
	for _, p := range e.procs() {
		if p.exited() {
			return fmt.Errorf("%s exited (%s)%s", p.name, p.exitDesc(), e.logs(nil))
		}
	}
	return nil
}

func (e *sharedEnv) procs() []*proc {
	var ps []*proc
	for _, p := range []*proc{e.socksd, e.device} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	if e.sshd != nil && e.sshd.proc != nil {
		ps = append(ps, e.sshd.proc)
	}
	return ps
}

// watch dumps what the shared processes logged during t, if t fails.
func (e *sharedEnv) watch(t *testing.T) {
	offs := map[*proc]int64{}
	for _, p := range e.procs() {
		offs[p] = p.logSize()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared fixture: device %s, socks %s, relay %s%s", e.deviceID, e.socksAddr, e.relayAddr, e.logs(offs))
		}
	})
}

// logs renders the shared processes' logs (from offs, if given).
func (e *sharedEnv) logs(offs map[*proc]int64) string {
	var b strings.Builder
	for _, p := range e.procs() {
		text := p.log()
		what := "log"
		if offs != nil {
			text = p.logSince(offs[p])
			what = "log during this test"
		}
		fmt.Fprintf(&b, "\n---- %s (%s) %s, %s ----\n%s", p.name, p.exitDesc(), what, p.logPath, tail(text, 150, 32<<10))
	}
	return b.String()
}

func (e *sharedEnv) teardown() error {
	if e == nil {
		return nil
	}
	var errs []error
	for _, p := range []*proc{e.device, e.socksd} {
		if p == nil {
			continue
		}
		if err := p.shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, tail(p.log(), 60, 16<<10)))
		}
	}
	for _, s := range []interface{ close() }{e.http, e.cnt, e.echo} {
		if s != nil && !isNil(s) {
			s.close()
		}
	}
	if e.sshd != nil {
		e.sshd.stop()
	}
	if e.dir != "" {
		_ = os.RemoveAll(e.dir)
	}
	return errors.Join(errs...)
}

func isNil(s interface{ close() }) bool {
	switch v := s.(type) {
	case *httpServer:
		return v == nil
	case *tcpServer:
		return v == nil
	}
	return false
}

// teardownShared is called by TestMain after all tests.
func teardownShared() error {
	if shared.env == nil {
		return nil
	}
	return shared.env.teardown()
}

// proxy returns the nc ProxyCommand for the shared socksd.
func (e *sharedEnv) ncProxy() string { return ncProxy(e.socksAddr) }

// host is the device's .tunnel name.
func (e *sharedEnv) host() string { return e.deviceID + ".tunnel" }

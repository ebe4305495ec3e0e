//go:build linux

package main

// The quic-go ceiling: what the library alone moves on this machine, with
// the same TCP legs as the tunnel. Two processes of this program,
//
//	nc → TCP → A (quicpipe dial) → one QUIC stream → B (quicpipe serve) → TCP → sink
//
// each with its own quic.Transport on its own UDP socket (quic-go's own
// GSO/GRO), the tunnel's end-to-end quic.Config (transport.PeerQUICConfig:
// same windows, same packet size) and TLS configuration
// (transport.ServerTLS/ClientTLS: same cipher suite, reported), and the
// tunnel's splice (transport.Splice: the same buffers) on both TCP legs.
// What the tunnel adds on top — its UDP socket, relay frames, the virtual
// conn under quic-go, path probing, SOCKS and the stream header — is
// absent, so the difference between this column and "tunnel direct" is
// what those cost.
//
// The bench starts them by running itself as `bench quicpipe serve|dial …`
// (a hidden mode: not in -h, never in bin/tunnel). B listens on -listen;
// for each stream, a 2-byte big-endian port, then the bytes for TCP
// 127.0.0.1:port. A dials B once and listens on one TCP port per -forward
// LOCAL:REMOTE; each accepted connection is one stream to REMOTE.

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/cmd/roles/cpuprofile"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// quicPipeMain runs a pipe process; args are what follows "quicpipe".
func quicPipeMain(args []string) int {
	if len(args) < 1 || (args[0] != "serve" && args[0] != "dial") {
		fmt.Fprintln(os.Stderr, "usage: bench quicpipe serve -listen ADDR | dial -peer ADDR -forward LPORT:RPORT…")
		return 2
	}
	fs := flag.NewFlagSet("quicpipe "+args[0], flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:0", "serve: UDP address")
	peer := fs.String("peer", "", "dial: B's UDP address")
	forward := fs.String("forward", "", "dial: LOCAL:REMOTE TCP ports, comma-separated")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer cpuprofile.FromEnv()()
	var err error
	if args[0] == "serve" {
		err = pipeServe(ctx, *listen)
	} else {
		err = pipeDial(ctx, *peer, *forward)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "quicpipe %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func pipeTransport(addr string) (*quic.Transport, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	uc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	return &quic.Transport{Conn: uc}, nil
}

func pipeServe(ctx context.Context, listen string) error {
	key, err := identity.Generate()
	if err != nil {
		return err
	}
	tlsConf, err := transport.ServerTLS(key, transport.ALPNPeer)
	if err != nil {
		return err
	}
	tr, err := pipeTransport(listen)
	if err != nil {
		return err
	}
	defer tr.Close()
	ln, err := tr.Listen(tlsConf, transport.PeerQUICConfig())
	if err != nil {
		return err
	}
	defer ln.Close()
	fmt.Fprintf(os.Stderr, "quicpipe serve: listening on %s\n", tr.Conn.LocalAddr())
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "quicpipe serve: connection from %s, cipher %s\n", conn.RemoteAddr(), cipherName(conn))
		wg.Go(func() {
			for {
				s, err := conn.AcceptStream(ctx)
				if err != nil {
					return
				}
				wg.Go(func() { serveStream(ctx, s) })
			}
		})
	}
}

func serveStream(ctx context.Context, s *quic.Stream) {
	var hdr [2]byte
	if _, err := io.ReadFull(s, hdr[:]); err != nil {
		s.CancelRead(1)
		s.CancelWrite(1)
		return
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(int(binary.BigEndian.Uint16(hdr[:])))))
	if err != nil {
		fmt.Fprintf(os.Stderr, "quicpipe serve: %v\n", err)
		s.CancelRead(1)
		s.CancelWrite(1)
		return
	}
	_, _, _ = transport.Splice(ctx, transport.Stream(s), transport.Conn(c))
}

func pipeDial(ctx context.Context, peer, forward string) error {
	type fwd struct{ local, remote int }
	var fwds []fwd
	for _, f := range strings.Split(forward, ",") {
		l, r, ok := strings.Cut(f, ":")
		lp, err1 := strconv.Atoi(l)
		rp, err2 := strconv.Atoi(r)
		if !ok || err1 != nil || err2 != nil || rp <= 0 || rp > 65535 {
			return fmt.Errorf("-forward %q: want LOCAL:REMOTE port pairs", f)
		}
		fwds = append(fwds, fwd{lp, rp})
	}
	key, err := identity.Generate()
	if err != nil {
		return err
	}
	tlsConf, err := transport.ClientTLS(key, transport.ALPNPeer, identity.ID{})
	if err != nil {
		return err
	}
	tr, err := pipeTransport("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer tr.Close()
	pa, err := net.ResolveUDPAddr("udp", peer)
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := tr.Dial(dctx, pa, tlsConf, transport.PeerQUICConfig())
	cancel()
	if err != nil {
		return fmt.Errorf("dial %s: %w", peer, err)
	}
	defer conn.CloseWithError(0, "")
	fmt.Fprintf(os.Stderr, "quicpipe dial: connected to %s, cipher %s\n", peer, cipherName(conn))

	var wg sync.WaitGroup
	defer wg.Wait()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, f := range fwds {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(f.local)))
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() { dialStream(ctx, conn, c, f.remote) })
			}
		})
	}
	select {
	case <-ctx.Done():
	case <-conn.Context().Done():
		return fmt.Errorf("connection to %s ended: %w", peer, context.Cause(conn.Context()))
	}
	return nil
}

func dialStream(ctx context.Context, conn *quic.Conn, c net.Conn, remote int) {
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		c.Close()
		return
	}
	var hdr [2]byte
	binary.BigEndian.PutUint16(hdr[:], uint16(remote))
	if _, err := s.Write(hdr[:]); err != nil {
		c.Close()
		s.CancelWrite(1)
		return
	}
	_, _, _ = transport.Splice(ctx, transport.Conn(c), transport.Stream(s))
}

func cipherName(conn *quic.Conn) string {
	return tls.CipherSuiteName(conn.ConnectionState().TLS.CipherSuite)
}

// ---- started by the bench ----

// quicPipe is a running pair.
type quicPipe struct {
	a, b   *proc
	cipher string
}

// startQuicPipe starts B (with env added, e.g. GOMAXPROCS=1) and A, with
// A forwarding one local port to each of remotes; it returns the pair and
// A's local ports, in the order of remotes.
func (b *bench) startQuicPipe(name string, envB []string, remotes ...int) (*quicPipe, []int, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	up, err := freePortNet("udp")
	if err != nil {
		return nil, nil, err
	}
	qp := &quicPipe{}
	if qp.b, err = daemonEnv(name+"-B", b.work, append(b.profileEnv(), envB...), self, "quicpipe", "serve", "-listen", addr(up)); err != nil {
		return nil, nil, err
	}
	var locals []int
	var fw []string
	for _, r := range remotes {
		lp, err := freePort()
		if err != nil {
			return nil, nil, err
		}
		locals = append(locals, lp)
		fw = append(fw, fmt.Sprintf("%d:%d", lp, r))
	}
	time.Sleep(200 * time.Millisecond) // B's socket is bound before A dials it
	if qp.a, err = daemonEnv(name+"-A", b.work, b.profileEnv(), self, "quicpipe", "dial", "-peer", addr(up), "-forward", strings.Join(fw, ",")); err != nil {
		return nil, nil, err
	}
	for _, lp := range locals {
		if err := waitTCP(addr(lp), 15*time.Second, qp.a); err != nil {
			return nil, nil, fmt.Errorf("%s: %w\nB's log:\n%s", name, err, qp.b.logTail(10))
		}
	}
	for _, line := range strings.Split(qp.a.logTail(10), "\n") {
		if _, c, ok := strings.Cut(line, ", cipher "); ok {
			qp.cipher = strings.TrimSpace(c)
		}
	}
	if qp.cipher == "" {
		return nil, nil, errors.New(name + ": A did not report its cipher suite")
	}
	return qp, locals, nil
}

// startCeiling starts the pipe measured in every round, next to the
// tunnel: the column "quic-go pipe".
func (b *bench) startCeiling() error {
	t, qp, err := b.pipeColumn("quic-go pipe", "pipe", nil)
	if err != nil {
		return err
	}
	b.pipe, b.pipeTarget = qp, t
	b.targets = append(b.targets, t)
	return nil
}

// pipeColumn starts a pipe to the sink, the source and the echo and
// returns the target that measures it: client is A, server is B.
func (b *bench) pipeColumn(name, procName string, envB []string) (*target, *quicPipe, error) {
	qp, locals, err := b.startQuicPipe(procName, envB, port(b.srv.sink), port(b.srv.source), port(b.srv.echo))
	if err != nil {
		return nil, nil, err
	}
	b.extra = append(b.extra, qp.a, qp.b)
	aPID, bPID := qp.a.pid(), qp.b.pid()
	t := &target{name: name, host: "127.0.0.1", sink: locals[0], source: locals[1], echo: locals[2],
		cpu: []cpuProbe{
			{"client", func() float64 { return cpuSeconds(aPID) }},
			{"server", func() float64 { return cpuSeconds(bPID) }},
		},
		procs: []roleProc{{"client", qp.a}, {"server", qp.b}}}
	if _, err := echoOnce(t); err != nil {
		return nil, nil, fmt.Errorf("%s: echo through the pipe: %w\nA's log:\n%s\nB's log:\n%s", name, err, qp.a.logTail(10), qp.b.logTail(10))
	}
	progress("%s: up, cipher %s", name, qp.cipher)
	return t, qp, nil
}

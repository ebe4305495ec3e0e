package peer

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/test/tcptest"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// sshServer is a real x/crypto/ssh server with host keys of several types,
// counting the connections it accepted and whether any began with a PROXY
// header.
type sshServer struct {
	addr  string
	keys  [][]byte // wire format
	conns atomic.Int64
	proxy atomic.Int64 // connections that began with a PROXY v2 header
}

func startSSHServer(t *testing.T, signers ...ssh.Signer) *sshServer {
	t.Helper()
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	srv := &sshServer{}
	for _, s := range signers {
		cfg.AddHostKey(s)
		srv.keys = append(srv.keys, s.PublicKey().Marshal())
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv.addr = ln.Addr().String()
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			srv.conns.Add(1)
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				var conn net.Conn = c
				sig := proxySignature
				head := make([]byte, len(sig))
				if _, err := io.ReadFull(c, head); err != nil {
					return
				}
				if bytes.Equal(head, sig) {
					srv.proxy.Add(1)
					var rest [4]byte // ver_cmd, fam, len
					if _, err := io.ReadFull(c, rest[:]); err != nil {
						return
					}
					if _, err := io.CopyN(io.Discard, c, int64(rest[2])<<8|int64(rest[3])); err != nil {
						return
					}
				} else {
					conn = &prefixed{Conn: c, r: io.MultiReader(bytes.NewReader(head), c)}
				}
				sc, chans, reqs, err := ssh.NewServerConn(conn, cfg)
				if err != nil {
					return // the scanner aborts every handshake
				}
				go ssh.DiscardRequests(reqs)
				for ch := range chans {
					ch.Reject(ssh.Prohibited, "test server")
				}
				sc.Close()
			})
		}
	})
	return srv
}

type prefixed struct {
	net.Conn
	r io.Reader
}

func (p *prefixed) Read(b []byte) (int, error) { return p.r.Read(b) }

func signers(t *testing.T) []ssh.Signer {
	t.Helper()
	_, edk, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	eck, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsak, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var out []ssh.Signer
	for _, k := range []any{edk, eck, rsak} {
		s, err := ssh.NewSignerFromKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func hostKeys(t *testing.T, c *quic.Conn, port uint16) ([][]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, _, err := stream.HostKeys(ctx, c, stream.Request{Port: port})
	return keys, err
}

func sameKeys(a, b [][]byte) bool {
	sorted := func(k [][]byte) [][]byte {
		k = slices.Clone(k)
		slices.SortFunc(k, bytes.Compare)
		return k
	}
	return slices.EqualFunc(sorted(a), sorted(b), bytes.Equal)
}

func keyTypes(keys [][]byte) []string {
	var out []string
	for _, k := range keys {
		pk, err := ssh.ParsePublicKey(k)
		if err != nil {
			out = append(out, "unparsable")
			continue
		}
		out = append(out, pk.Type())
	}
	return out
}

func TestHostKeys(t *testing.T) {
	friendKey, _ := identity.Generate()
	srv := startSSHServer(t, signers(t)...)
	proxied := startSSHServer(t, signers(t)[:1]...)
	agent := &Agent{Ports: []Port{
		{Remote: 22, Target: srv.addr, Access: Public},
		{Remote: 2222, Target: proxied.addr, Access: Public, ProxyProtocol: true},
		{Remote: 80, Target: notSSH(t), Access: Public},
		{Remote: 81, Target: tcptest.ClosedPort(t), Access: Public},
		{Remote: 23, Target: srv.addr, Access: Private, Allowed: []identity.ID{friendKey.ID()}},
	}}
	n := startAgentNet(t, agent)
	c := n.dial(t, n.node(t, nil))

	t.Run("every key type the server has", func(t *testing.T) {
		keys, err := hostKeys(t, c, 22)
		if err != nil {
			t.Fatal(err)
		}
		if !sameKeys(keys, srv.keys) {
			t.Fatalf("got keys of types %v, want the server's %v", keyTypes(keys), keyTypes(srv.keys))
		}
		// ed25519, ecdsa, rsa, then one that finds no type left.
		if got := srv.conns.Load(); got != 4 {
			t.Errorf("scan made %d connections to the server, want 4", got)
		}
	})

	t.Run("a second request within the cache is not a second scan", func(t *testing.T) {
		before := srv.conns.Load()
		for range 5 {
			keys, err := hostKeys(t, c, 22)
			if err != nil || !sameKeys(keys, srv.keys) {
				t.Fatalf("repeated request: %v, %v", keyTypes(keys), err)
			}
		}
		if got := srv.conns.Load() - before; got != 0 {
			t.Errorf("5 repeated requests made %d connections to the server, want 0", got)
		}
	})

	t.Run("PROXY header first", func(t *testing.T) {
		keys, err := hostKeys(t, c, 2222)
		if err != nil || !sameKeys(keys, proxied.keys) {
			t.Fatalf("got %v, %v; want the server's %v", keyTypes(keys), err, keyTypes(proxied.keys))
		}
		if p, all := proxied.proxy.Load(), proxied.conns.Load(); p != all || p == 0 {
			t.Errorf("%d of %d scan connections began with a PROXY header, want all", p, all)
		}
	})

	t.Run("not ssh", func(t *testing.T) {
		keys, err := hostKeys(t, c, 80)
		if !errors.Is(err, stream.ErrNotSSH) || keys != nil {
			t.Fatalf("host keys of a web server: %v, %v; want ErrNotSSH", keyTypes(keys), err)
		}
		t.Logf("client error: %v", err)
	})

	t.Run("refusals as a connect's", func(t *testing.T) {
		for _, tc := range []struct {
			port uint16
			want error
		}{
			{81, stream.ErrRefused},
			{23, stream.ErrDenied},
			{99, stream.ErrPortNotPublished},
		} {
			if _, err := hostKeys(t, c, tc.port); !errors.Is(err, tc.want) {
				t.Errorf("host keys of port %d: %v, want %v", tc.port, err, tc.want)
			}
		}
	})

	t.Run("allowed client of a private port", func(t *testing.T) {
		friend := n.dial(t, n.node(t, friendKey))
		keys, err := hostKeys(t, friend, 23)
		if err != nil || !sameKeys(keys, srv.keys) {
			t.Fatalf("friend: %v, %v", keyTypes(keys), err)
		}
	})

	t.Run("ping", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := stream.Ping(ctx, c); err != nil {
			t.Fatalf("ping: %v", err)
		}
	})
}

// Concurrent requests for one target share one scan.
func TestHostKeysConcurrentShareScan(t *testing.T) {
	srv := startSSHServer(t, signers(t)[:1]...)
	agent := &Agent{Ports: []Port{{Remote: 22, Target: srv.addr, Access: Public}}}
	n := startAgentNet(t, agent)
	c := n.dial(t, n.node(t, nil))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			keys, err := hostKeys(t, c, 22)
			if err == nil && !sameKeys(keys, srv.keys) {
				err = errors.New("wrong keys")
			}
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// One key: one handshake that finds it, one that finds no type left.
	if got := srv.conns.Load(); got != 2 {
		t.Errorf("8 concurrent requests made %d connections to the server, want 2", got)
	}
}

// A stranger — a key no port allows — may ping, and ask for the host keys
// of a port that denies it, as fast as it likes: it costs the device a
// constant (streams capped, log lines bounded), never a scan, and pinging
// does not authorize it.
func TestStrangerHostKeysAndPingCost(t *testing.T) {
	friendKey, _ := identity.Generate()
	srv := startSSHServer(t, signers(t)[:1]...)
	agent := &Agent{Ports: []Port{{Remote: 22, Target: srv.addr, Access: Private, Allowed: []identity.ID{friendKey.ID()}}}}
	n := startAgentNet(t, agent)
	stranger := n.dial(t, n.node(t, nil))

	runtime.GC()
	g0 := runtime.NumGoroutine()
	logs0 := n.log.aboveDebug()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Half-open requests of the new kinds: the version byte only.
	const streams = 500
	for range streams {
		s, err := stranger.OpenStreamSync(ctx)
		if err != nil {
			t.Fatalf("stranger's stream: %v", err)
		}
		s.Write([]byte{stream.KindVersion, byte(stream.KindHostKeys)})
	}
	time.Sleep(500 * time.Millisecond)
	held := runtime.NumGoroutine() - g0
	if lim := DefaultLimits().UnauthorizedStreams + 20; held > lim {
		t.Errorf("the stranger's %d half-open host-key requests hold %d goroutines, want at most %d", streams, held, lim)
	}

	stranger2 := n.dial(t, n.node(t, nil))
	var pings, denied, limited, other atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range 4 {
		wg.Go(func() {
			for time.Since(start) < 1500*time.Millisecond {
				pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
				if stream.Ping(pctx, stranger2) == nil {
					pings.Add(1)
				}
				pcancel()
				_, err := hostKeys(t, stranger2, 22)
				switch se, reset := errors.AsType[*quic.StreamError](err); {
				case errors.Is(err, stream.ErrDenied):
					denied.Add(1)
				case reset && se.ErrorCode == codeLimited:
					// The cap on a stranger's streams at work: the device
					// may still be finishing the previous ones.
					limited.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	lines := n.log.aboveDebug() - logs0
	t.Logf("stranger: %d half-open host-key streams held %d goroutines; %d pings answered, %d host-key requests denied, "+
		"%d refused over the cap, %d other, %d log lines above debug, %d streams refused over the cap in all, %d scan connections",
		streams, held, pings.Load(), denied.Load(), limited.Load(), other.Load(), lines, agent.Refused.Streams.Load(), srv.conns.Load())
	if pings.Load() == 0 || denied.Load() == 0 {
		t.Fatalf("%d pings answered, %d host-key requests denied; want both > 0", pings.Load(), denied.Load())
	}
	if other.Load() != 0 {
		t.Errorf("%d host-key requests of a stranger ended otherwise than denied", other.Load())
	}
	if got := srv.conns.Load(); got != 0 {
		t.Errorf("a stranger's requests made %d connections to the ssh server, want 0", got)
	}
	// Pings log nothing above debug; denials at most a burst per key per
	// reportEvery (two keys here).
	if max := 2*reportBurst + 2; lines > max {
		t.Errorf("%d log lines, want at most %d:\n%s", lines, max, strings.Join(n.log.lines, ""))
	}
	if agent.Refused.Streams.Load() == 0 {
		t.Error("none of the stranger's half-open streams was refused over the unauthorized cap")
	}
	// Pinging authorized nothing: the pinging stranger's streams are still
	// capped.
	refused := agent.Refused.Streams.Load()
	for range DefaultLimits().UnauthorizedStreams + 5 {
		s, err := stranger2.OpenStreamSync(ctx)
		if err != nil {
			t.Fatalf("stranger's stream: %v", err)
		}
		s.Write([]byte{stream.KindVersion})
	}
	deadline := time.Now().Add(5 * time.Second)
	for agent.Refused.Streams.Load() == refused && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if agent.Refused.Streams.Load() == refused {
		t.Error("after its pings, a stranger's half-open streams were not capped: ping authorized it")
	}
}

// notSSH is a TCP service that answers like a web server and hangs up.
func notSSH(t *testing.T) string {
	return tcptest.Serve(t, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Read(make([]byte, 512))
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
	})
}

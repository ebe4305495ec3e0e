package dialer_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/test/tcptest"
)

// sshServer runs a real x/crypto/ssh server with one ed25519 host key and
// returns its address and key.
func sshServer(t *testing.T) (string, ssh.PublicKey) {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(signer)
	return tcptest.Serve(t, func(c net.Conn) {
		if sc, chans, reqs, err := ssh.NewServerConn(c, cfg); err == nil {
			go ssh.DiscardRequests(reqs)
			go func() {
				for ch := range chans {
					ch.Reject(ssh.Prohibited, "test")
				}
			}()
			sc.Close()
		}
	}), signer.PublicKey()
}

func TestHostKeysAndPing(t *testing.T) {
	sshAddr, hostKey := sshServer(t)
	web := tcptest.Serve(t, func(c net.Conn) {
		c.Read(make([]byte, 256))
		io.WriteString(c, "HTTP/1.0 400 Bad Request\r\n\r\n")
	})
	w := startWorld(t, []peer.Port{{Remote: 22, Target: sshAddr}, {Remote: 80, Target: web}, {Remote: 9, Target: tcptest.ClosedPort(t)}}, nil)
	name := deviceID(w.device).String() + ".tunnel"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	keys, err := w.dialer.HostKeys(ctx, name, 22)
	if err != nil {
		t.Fatalf("HostKeys: %v", err)
	}
	if len(keys) != 1 || !bytes.Equal(keys[0].Marshal(), hostKey.Marshal()) {
		t.Fatalf("HostKeys returned %d keys, want the server's one %s", len(keys), hostKey.Type())
	}

	p, err := w.dialer.Ping(ctx, name)
	if err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if p.RTT <= 0 || p.RTT > 5*time.Second || (p.Path != "direct" && p.Path != "relayed") || p.Via == "" || p.Via == "?" {
		t.Fatalf("Ping = %+v", p)
	}
	if p.Path == "relayed" && p.Via != w.relay.Addr().HostPort {
		t.Errorf("relayed via %s, want the rendezvous node %s", p.Via, w.relay.Addr().HostPort)
	}
	t.Logf("pong: %+v", p)
	if n := len(w.client.Transport.Peers()); n != 1 {
		t.Errorf("%d device connections after host keys and ping, want 1 shared", n)
	}

	unknown, _ := identity.Generate()
	for _, tc := range []struct {
		name string
		err  error
		want dialer.Outcome
	}{
		{"host keys of a web server", second(w.dialer.HostKeys(ctx, name, 80)), dialer.NotSSH},
		{"host keys of a closed port", second(w.dialer.HostKeys(ctx, name, 9)), dialer.Refused},
		{"host keys of an unpublished port", second(w.dialer.HostKeys(ctx, name, 23)), dialer.NotPublished},
		{"host keys of an offline device", second(w.dialer.HostKeys(ctx, unknown.ID().String()+".tunnel", 22)), dialer.Offline},
		{"ping of an offline device", second(w.dialer.Ping(ctx, unknown.ID().String()+".tunnel")), dialer.Offline},
		{"ping of a malformed name", second(w.dialer.Ping(ctx, "abc.tunnel")), dialer.MalformedName},
		{"ping of a host that is not .tunnel", second(w.dialer.Ping(ctx, "example.com")), dialer.NotTunnel},
	} {
		if got := dialer.Classify(tc.err); got != tc.want {
			t.Errorf("%s: %v (%v), want %v", tc.name, got, tc.err, tc.want)
		}
	}
}

func second[T any](_ T, err error) error { return err }

package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/socks"
)

// writeCert writes a self-signed certificate for *.example.test and its
// key as PEM files in dir.
func writeCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "*.example.test"},
		DNSNames: []string{"*.example.test"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

func runGatewayCLI(ctx context.Context, home string, args ...string) error {
	app := newApp()
	app.Writer, app.ErrWriter = io.Discard, io.Discard
	return app.RunContext(ctx, append([]string{"tunnel", "--home", home, "--log-level", "error", "gateway"}, args...))
}

func TestGatewayUsageErrors(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	junk := filepath.Join(dir, "junk.pem")
	os.WriteFile(junk, []byte("not PEM"), 0o600)
	ok := []string{"--http", "127.0.0.1:0", "--domain", "example.test"}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"nothing to serve", nil},
		{"an argument", append([]string{"extra"}, ok...)},
		{"bad domain: space", []string{"--http", "127.0.0.1:0", "--domain", "exa mple.test"}},
		{"bad domain: .tunnel", []string{"--http", "127.0.0.1:0", "--domain", "gw.tunnel"}},
		{"bad domain: leading dash", []string{"--socks", "127.0.0.1:0", "--domain", "-gw.example.test"}},
		{"bad domain: wildcard", []string{"--http", "127.0.0.1:0", "--domain", "*.example.test"}},
		{"http without domain", []string{"--http", "127.0.0.1:0"}},
		{"https without cert files", []string{"--https", "127.0.0.1:0", "--domain", "example.test"}},
		{"https without key", []string{"--https", "127.0.0.1:0", "--domain", "example.test", "--tls-cert", cert}},
		{"https without cert", []string{"--https", "127.0.0.1:0", "--domain", "example.test", "--tls-key", key}},
		{"https with a missing file", []string{"--https", "127.0.0.1:0", "--domain", "example.test", "--tls-cert", cert, "--tls-key", filepath.Join(dir, "nope")}},
		{"https with junk", []string{"--https", "127.0.0.1:0", "--domain", "example.test", "--tls-cert", junk, "--tls-key", key}},
		{"cert without https", append([]string{"--tls-cert", cert, "--tls-key", key}, ok...)},
		{"bad listen address: no port", []string{"--socks", "127.0.0.1"}},
		{"bad listen address: port", []string{"--http", "127.0.0.1:99999", "--domain", "example.test"}},
		{"bad listen address: junk", []string{"--https", "not an address", "--domain", "example.test", "--tls-cert", cert, "--tls-key", key}},
		{"bad relay", append([]string{"--relay", "nonsense"}, ok...)},
		{"rate 0", append([]string{"--rate-conn", "0"}, ok...)},
		{"rate not a number", append([]string{"--rate-conn", "lots"}, ok...)},
		{"max-streams 0", append([]string{"--max-streams", "0"}, ok...)},
		{"max-total -1", append([]string{"--max-total", "-1"}, ok...)},
		{"unknown flag", append([]string{"--open-proxy"}, ok...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			err := runGatewayCLI(context.Background(), home, tc.args...)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("gateway %q: %v; want a usage error (exit 2)", tc.args, err)
			}
			for _, f := range []string{"node.key", "gateway.key"} {
				if _, serr := os.Stat(filepath.Join(home, f)); serr == nil {
					t.Fatalf("a usage error still created %s", f)
				}
			}
		})
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func waitListening(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never listened: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestGatewayRunsAndStops starts the command on loopback (its rendezvous
// node absent: nothing here needs a device), checks that each front
// answers, and that cancelling stops everything.
func TestGatewayRunsAndStops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	dir := t.TempDir()
	cert, key := writeCert(t, dir)
	socksAddr, httpAddr, httpsAddr := freePort(t), freePort(t), freePort(t)
	relay, err := net.ListenPacket("udp", "127.0.0.1:0") // a silent "rendezvous node"
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runGatewayCLI(ctx, dir, "--relay", relay.LocalAddr().String(), "--socks", socksAddr,
			"--http", httpAddr, "--https", httpsAddr, "--domain", "Example.Test", "--tls-cert", cert, "--tls-key", key)
	}()
	for _, a := range []string{socksAddr, httpAddr, httpsAddr} {
		waitListening(t, a)
	}

	// SOCKS: not a .tunnel name, so 0x02 and no connection anywhere.
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	_, err = socks.Dial(sctx, socksAddr, "example.com", 80)
	scancel()
	if re, ok := errors.AsType[*socks.ReplyError](err); !ok || re.Code != socks.ReplyNotAllowed {
		t.Errorf("SOCKS to example.com: %v, want reply 0x02", err)
	}

	// HTTP and HTTPS: a Host the gateway does not serve is a 400.
	k, _ := identity.Generate()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	for _, u := range []string{"http://" + httpAddr + "/", "https://" + httpsAddr + "/"} {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Host = "www.example.org"
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s for www.example.org: %d, want 400", u, res.StatusCode)
		}
	}
	// A device name under the (normalized) domain is routed: with no
	// rendezvous node answering, a quick 502 or 504, never a hang.
	c2, err := net.DialTimeout("tcp", httpAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c2.SetDeadline(time.Now().Add(15 * time.Second))
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: "+k.ID().String()+".example.test\r\n\r\n")
	if res, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil || (res.StatusCode != 502 && res.StatusCode != 504) {
		t.Errorf("a device with no rendezvous node: %v %v, want 502 or 504", res, err)
	}
	c2.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("gateway: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("gateway did not stop")
	}
	for _, a := range []string{socksAddr, httpAddr, httpsAddr} {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still listens after the gateway stopped", a)
		}
	}
}

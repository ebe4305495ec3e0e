package registry

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/rs/zerolog"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

func newTestCA(t *testing.T, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(dir, name+".pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, file: file}
}

// serverCert is a certificate the CA signs for 127.0.0.1.
func (ca *testCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// syncBuffer is a log destination several goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRedisTLS runs presence over rediss:// against a Redis (miniredis)
// serving TLS with a certificate from a CA made here, with a password:
// trusting that CA (CAFile), two nodes share a device; trusting the
// system's roots, or another CA, or with a wrong password, the node
// refuses Redis, and nothing it logs or returns holds the password.
func TestRedisTLS(t *testing.T) {
	const pw = "Tls-s3cret-pw"
	dir := t.TempDir()
	ca := newTestCA(t, dir, "ca")
	other := newTestCA(t, dir, "other")
	mr, err := miniredis.RunTLS(&tls.Config{Certificates: []tls.Certificate{ca.serverCert(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer mr.Close()
	mr.RequireUserAuth("tunnel", pw)
	url := "rediss://tunnel:" + pw + "@" + mr.Addr() + "/0"
	ctx := context.Background()
	var logs syncBuffer
	log := zerolog.New(&logs)

	open := func(c RedisConfig, advertise string) *RedisPresence {
		t.Helper()
		p, err := NewRedisPresence(c, newID(t), advertise, log)
		if err != nil {
			t.Fatalf("NewRedisPresence: %v", err)
		}
		t.Cleanup(func() { p.Close() })
		return p
	}
	a := open(RedisConfig{URL: url, CAFile: ca.file}, "127.0.0.1:1001")
	b := open(RedisConfig{URL: url, CAFile: ca.file}, "127.0.0.1:1002")
	dev := newID(t)
	if err := a.Set(ctx, dev, Record{Endpoint: 42}); err != nil {
		t.Fatalf("set over TLS: %v", err)
	}
	if _, err := a.Refresh(ctx); err != nil {
		t.Fatalf("refresh over TLS: %v", err)
	}
	rec, err := b.Get(ctx, dev)
	if err != nil || rec.Node != a.Node || rec.Endpoint != 42 {
		t.Fatalf("B's lookup over TLS: %+v, %v; want A's record", rec, err)
	}
	if n := len(mr.Keys()); n != 2 {
		t.Fatalf("%d keys in Redis, want 2 (the device, A's liveness)", n)
	}

	// Refused: the server's CA is not trusted, or the password is wrong.
	for name, c := range map[string]RedisConfig{
		"system roots":   {URL: url},
		"another CA":     {URL: url, CAFile: other.file},
		"wrong password": {URL: strings.Replace(url, pw, "wrong-"+pw, 1), CAFile: ca.file},
		"no TLS":         {URL: "redis://tunnel:" + pw + "@" + mr.Addr() + "/0"},
	} {
		p := open(c, "127.0.0.1:1003")
		err := p.Set(ctx, newID(t), Record{Endpoint: 1})
		if !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: set = %v, want ErrUnavailable", name, err)
		}
		if err != nil && strings.Contains(err.Error(), pw) {
			t.Errorf("%s: the error holds the password: %v", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if strings.Contains(logs.String(), pw) {
		t.Fatalf("the logs hold the password:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "registry (redis) unavailable") {
		t.Fatalf("the refusals were not logged:\n%s", logs.String())
	}
}

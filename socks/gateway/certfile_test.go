package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"github.com/tunnel-dev/tunnel/test/tcptest"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// writePair writes cert (from wildcardCert) as PEM files in dir.
func writePair(t *testing.T, dir string, cert tls.Certificate) (certPath, keyPath string) {
	t.Helper()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}

// A reload changes the certificate of the handshakes after it, not the
// connections made before; a pair that does not load keeps the one in use.
func TestCertFileReload(t *testing.T) {
	dir := t.TempDir()
	first, _ := wildcardCert(t)
	second, _ := wildcardCert(t)
	certPath, keyPath := writePair(t, dir, first)
	f, err := LoadCertFile(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", f.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	tcptest.ServeListener(t, ln, tcptest.EchoConn)
	dial := func() (*tls.Conn, []byte) {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, ServerName: "x." + testDomain})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, c.ConnectionState().PeerCertificates[0].Raw
	}
	echo := func(c *tls.Conn, word string) {
		t.Helper()
		if _, err := c.Write([]byte(word)); err != nil {
			t.Fatalf("write: %v", err)
		}
		buf := make([]byte, len(word))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != word {
			t.Fatalf("echo %q: got %q, %v", word, buf, err)
		}
	}
	before, got := dial()
	if !bytes.Equal(got, first.Certificate[0]) {
		t.Fatal("first handshake: not the loaded certificate")
	}
	writePair(t, dir, second)
	if err := f.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, got := dial(); !bytes.Equal(got, second.Certificate[0]) {
		t.Error("handshake after Reload: still the old certificate")
	}
	echo(before, "made before the reload")

	if err := os.WriteFile(keyPath, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.Reload(); err == nil {
		t.Error("Reload of a broken key file: no error")
	}
	if _, got := dial(); !bytes.Equal(got, second.Certificate[0]) {
		t.Error("after a failed Reload: not the certificate in use before it")
	}
	if !bytes.Equal(f.Leaf().Raw, second.Certificate[0]) {
		t.Error("Leaf is not the certificate in use")
	}
}

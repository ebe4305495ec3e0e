package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
)

// CertFile is the HTTPS front's certificate, loaded from a PEM
// certificate (chain) file and its key file, and loaded again by Reload
// when they are renewed: handshakes from then on get the new one, and
// connections made before keep theirs. A pair that does not load leaves
// the one in use in place.
type CertFile struct {
	certPath, keyPath string
	cur               atomic.Pointer[tls.Certificate]
}

// LoadCertFile loads the pair of files.
func LoadCertFile(certPath, keyPath string) (*CertFile, error) {
	f := &CertFile{certPath: certPath, keyPath: keyPath}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload loads the files again; on error the certificate in use stays.
func (f *CertFile) Reload() error {
	pair, err := tls.LoadX509KeyPair(f.certPath, f.keyPath)
	if err != nil {
		return fmt.Errorf("load TLS certificate %q and key %q: %w", f.certPath, f.keyPath, err)
	}
	f.cur.Store(&pair)
	return nil
}

// Leaf is the certificate in use.
func (f *CertFile) Leaf() *x509.Certificate { return f.cur.Load().Leaf }

// GetCertificate is tls.Config's: the certificate in use.
func (f *CertFile) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cur.Load(), nil
}

// TLSConfig is a server config presenting the certificate in use.
func (f *CertFile) TLSConfig() *tls.Config { return &tls.Config{GetCertificate: f.GetCertificate} }

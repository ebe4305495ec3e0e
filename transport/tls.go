package transport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// ALPN protocol names. A relay's control connection and an end-to-end
// connection never accept each other's handshakes.
const (
	ALPNRelay = "tunnel-relay/1"
	ALPNPeer  = "tunnel/1"
)

// Go's TLS has no raw public keys, so a node presents a self-signed
// certificate for its Ed25519 key. Nothing about the certificate is trusted
// but the key: the TLS handshake proves the peer holds the private key, and
// VerifyConnection (which, unlike VerifyPeerCertificate, also runs on resumed
// sessions) compares that key with the ID expected.
func certificate(k *identity.Key) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: k.ID().String()},
		DNSNames:     []string{k.ID().String() + ".tunnel"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(100 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	priv := k.PrivateKey()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// PeerID returns the ID proved by the peer in a completed handshake.
func PeerID(cs tls.ConnectionState) (identity.ID, error) {
	if len(cs.PeerCertificates) == 0 {
		return identity.ID{}, errors.New("peer presented no certificate")
	}
	pub, ok := cs.PeerCertificates[0].PublicKey.(ed25519.PublicKey)
	if !ok {
		return identity.ID{}, fmt.Errorf("peer key is %T, want Ed25519", cs.PeerCertificates[0].PublicKey)
	}
	return identity.IDFromPublicKey(pub)
}

// ServerTLS is the TLS configuration of the accepting side. It requires a
// client certificate and accepts any Ed25519 key: callers learn who the
// peer is from PeerID and decide what it may do.
func ServerTLS(k *identity.Key, alpn string) (*tls.Config, error) {
	c, err := baseTLS(k, alpn, identity.ID{})
	if err != nil {
		return nil, err
	}
	c.ClientAuth = tls.RequireAnyClientCert
	c.SessionTicketsDisabled = true
	return c, nil
}

// ClientTLS is the TLS configuration of the dialing side. When expect is not
// the zero ID the handshake fails unless the peer proves that key, with an
// error wrapping ErrPeerMismatch.
func ClientTLS(k *identity.Key, alpn string, expect identity.ID) (*tls.Config, error) {
	c, err := baseTLS(k, alpn, expect)
	if err != nil {
		return nil, err
	}
	// The chain is not what we trust; the key is, checked in
	// VerifyConnection.
	c.InsecureSkipVerify = true
	c.ServerName = "tunnel"
	return c, nil
}

// baseTLS is what both sides share: TLS 1.3, k's certificate, alpn, and a
// VerifyConnection that requires an Ed25519 peer key — expect's, unless
// expect is zero.
func baseTLS(k *identity.Key, alpn string, expect identity.ID) (*tls.Config, error) {
	cert, err := certificate(k)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{alpn},
		VerifyConnection: func(cs tls.ConnectionState) error {
			got, err := PeerID(cs)
			if err != nil {
				return err
			}
			if !expect.IsZero() && got != expect {
				return fmt.Errorf("%w: want %s, peer proved %s", ErrPeerMismatch, expect.Short(), got.Short())
			}
			return nil
		},
	}, nil
}

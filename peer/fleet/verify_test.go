package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

var sentinels = []error{ErrNotMember, ErrWrongFleet, ErrWrongMember, ErrExpired, ErrBadCredential}

// wantSentinel fails unless err wraps want and no other sentinel.
func wantSentinel(t *testing.T, name string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: err = %v, want %v", name, err, want)
		return
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("%s: err = %v wraps %v as well as %v", name, err, s, want)
		}
	}
}

func TestVerifySentinels(t *testing.T) {
	fleetKey, other, a, b := newKey(t), newKey(t), newKey(t), newKey(t)
	now := time.Now()
	credA, err := Issue(fleetKey, a.ID(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(credA.Wire(), fleetKey.ID(), a.ID(), now); err != nil {
		t.Fatalf("valid credential: %v", err)
	}

	_, err = Verify(nil, fleetKey.ID(), a.ID(), now)
	wantSentinel(t, "nil", err, ErrNotMember)
	_, err = Verify([]byte{}, fleetKey.ID(), a.ID(), now)
	wantSentinel(t, "empty", err, ErrNotMember)

	otherCred, err := Issue(other, a.ID(), time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(otherCred.Wire(), fleetKey.ID(), a.ID(), now)
	wantSentinel(t, "another fleet", err, ErrWrongFleet)
	_, err = Verify(credA.Wire(), identity.ID{}, a.ID(), now)
	wantSentinel(t, "device in no fleet", err, ErrWrongFleet)

	_, err = Verify(credA.Wire(), fleetKey.ID(), b.ID(), now)
	wantSentinel(t, "A's credential presented by B", err, ErrWrongMember)

	old, err := Issue(fleetKey, a.ID(), 24*time.Hour, now.Add(-100*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(old.Wire(), fleetKey.ID(), a.ID(), now)
	wantSentinel(t, "expired", err, ErrExpired)
	if err != nil && !strings.Contains(err.Error(), "expired at") {
		t.Errorf("expired: message %q does not say when", err)
	}

	future, err := Issue(fleetKey, a.ID(), 24*time.Hour, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = Verify(future.Wire(), fleetKey.ID(), a.ID(), now)
	wantSentinel(t, "not yet valid", err, ErrExpired)
	if err != nil && !strings.Contains(err.Error(), "not yet valid") {
		t.Errorf("not yet valid: message %q does not say so", err)
	}

	// The window is [ValidAfter, ValidBefore), as in OpenSSH.
	for _, tc := range []struct {
		at   time.Time
		want error
	}{
		{credA.ValidAfter.Add(-time.Second), ErrExpired},
		{credA.ValidAfter, nil},
		{credA.ValidBefore.Add(-time.Second), nil},
		{credA.ValidBefore, ErrExpired},
	} {
		_, err := Verify(credA.Wire(), fleetKey.ID(), a.ID(), tc.at)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("at %v: err = %v, want %v", tc.at, err, tc.want)
		}
	}

	_, err = Verify(credA.Marshal(), fleetKey.ID(), a.ID(), now)
	wantSentinel(t, "text form on the wire", err, ErrBadCredential)
}

// signers of the kinds a certificate can be signed with.
type signers struct {
	fleet, otherFleet, rsa, ecdsa ssh.Signer
}

func newSigners(t *testing.T, fleetKey, otherFleet *identity.Key) signers {
	t.Helper()
	var s signers
	var err error
	if s.fleet, err = ssh.NewSignerFromKey(fleetKey.PrivateKey()); err != nil {
		t.Fatal(err)
	}
	if s.otherFleet, err = ssh.NewSignerFromKey(otherFleet.PrivateKey()); err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if s.rsa, err = ssh.NewSignerFromKey(rk); err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if s.ecdsa, err = ssh.NewSignerFromKey(ek); err != nil {
		t.Fatal(err)
	}
	return s
}

// craft signs a certificate for key that would be a valid credential at
// now, after edit changes it.
func craft(t *testing.T, signer ssh.Signer, key ssh.PublicKey, principal string, now time.Time, edit func(*ssh.Certificate)) *ssh.Certificate {
	t.Helper()
	cert := &ssh.Certificate{
		Key:             key,
		Serial:          42,
		CertType:        ssh.UserCert,
		KeyId:           "crafted",
		ValidPrincipals: []string{principal},
		ValidAfter:      uint64(now.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(now.Add(time.Hour).Unix()),
	}
	if edit != nil {
		edit(cert)
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestVerifyRejectsMalformed(t *testing.T) {
	fleetKey, otherFleet, member, other := newKey(t), newKey(t), newKey(t), newKey(t)
	now := time.Now()
	s := newSigners(t, fleetKey, otherFleet)
	memberPub := mustSSHPub(t, member)
	id := member.ID().String()

	// The baseline every case below differs from in one thing.
	if _, err := Verify(craft(t, s.fleet, memberPub, id, now, nil).Marshal(), fleetKey.ID(), member.ID(), now); err != nil {
		t.Fatalf("baseline: %v", err)
	}
	resigned := func(edit func(*ssh.Certificate)) []byte {
		c := craft(t, s.fleet, memberPub, id, now, nil)
		edit(c) // after signing: the signature no longer covers it
		return c.Marshal()
	}
	good := craft(t, s.fleet, memberPub, id, now, nil).Marshal()
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1 // last byte of the Ed25519 signature
	ecdsaPub := s.ecdsa.PublicKey()

	cases := map[string][]byte{
		"signed by RSA":          craft(t, s.rsa, memberPub, id, now, nil).Marshal(),
		"signed by ECDSA":        craft(t, s.ecdsa, memberPub, id, now, nil).Marshal(),
		"certifies an ECDSA key": craft(t, s.fleet, ecdsaPub, id, now, nil).Marshal(),
		"host certificate":       craft(t, s.fleet, memberPub, id, now, func(c *ssh.Certificate) { c.CertType = ssh.HostCert }).Marshal(),
		"principal of another":   craft(t, s.fleet, memberPub, other.ID().String(), now, nil).Marshal(),
		"principal not an ID":    craft(t, s.fleet, memberPub, "root", now, nil).Marshal(),
		"two principals": craft(t, s.fleet, memberPub, id, now, func(c *ssh.Certificate) {
			c.ValidPrincipals = append(c.ValidPrincipals, other.ID().String())
		}).Marshal(),
		"no principals": craft(t, s.fleet, memberPub, id, now, func(c *ssh.Certificate) { c.ValidPrincipals = nil }).Marshal(),
		"critical option": craft(t, s.fleet, memberPub, id, now, func(c *ssh.Certificate) {
			c.CriticalOptions = map[string]string{"source-address": "10.0.0.1/32"}
		}).Marshal(),
		"never expires":                craft(t, s.fleet, memberPub, id, now, func(c *ssh.Certificate) { c.ValidBefore = ssh.CertTimeInfinity }).Marshal(),
		"empty window":                 craft(t, s.fleet, memberPub, id, now, func(c *ssh.Certificate) { c.ValidBefore = c.ValidAfter }).Marshal(),
		"signature byte flipped":       flipped,
		"serial changed after signing": resigned(func(c *ssh.Certificate) { c.Serial++ }),
		"extended after signing":       resigned(func(c *ssh.Certificate) { c.ValidBefore += 3600 }),
		// A forger who names the fleet key as signer but signs with his own.
		"signature key swapped": resigned(func(c *ssh.Certificate) { c.SignatureKey = s.otherFleet.PublicKey() }),
		"trailing junk":         append(append([]byte(nil), good...), 0),
		"plain public key":      memberPub.Marshal(),
		"garbage":               []byte("hello, I am a credential"),
		"zeros":                 make([]byte, 64),
		"too long":              make([]byte, MaxWireLen+1),
	}
	for name, wire := range cases {
		_, err := Verify(wire, fleetKey.ID(), member.ID(), now)
		wantSentinel(t, name, err, ErrBadCredential)
		if _, perr := Parse(wire); !errors.Is(perr, ErrBadCredential) {
			t.Errorf("%s: Parse = %v, want ErrBadCredential", name, perr)
		}
	}
	_, err := Parse(cases["principal of another"])
	if err == nil || !strings.Contains(err.Error(), "principal does not name the certified key") {
		t.Errorf("principal of another: Parse = %v", err)
	}

	// Every proper prefix, in both forms.
	for i := 1; i < len(good); i++ {
		_, err := Verify(good[:i], fleetKey.ID(), member.ID(), now)
		wantSentinel(t, "wire truncated", err, ErrBadCredential)
	}
	c, err := Parse(good)
	if err != nil {
		t.Fatal(err)
	}
	text := c.Marshal()
	end := strings.Index(string(text), " tunnel-fleet")
	for i := 1; i < end; i++ {
		if _, err := Parse(text[:i]); !errors.Is(err, ErrBadCredential) {
			t.Fatalf("text truncated to %d bytes: Parse = %v, want ErrBadCredential", i, err)
		}
	}
}

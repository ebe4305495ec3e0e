package fleet

import (
	"crypto/ed25519"
	"crypto/sha512"
	"errors"
	"math/big"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// forgeZeroKeySignature signs msg for the all-zero Ed25519 public key, a
// point of order 4, without any private key: R = [r]B and S = r verify
// whenever the challenge k is a multiple of 4, one try in four.
func forgeZeroKeySignature(t *testing.T, msg []byte) []byte {
	t.Helper()
	order, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	var zero [ed25519.PublicKeySize]byte
	for seed := byte(0); seed < 200; seed++ {
		// [r]B is the public key of a seed whose clamped hash is r.
		priv := ed25519.NewKeyFromSeed(slices.Repeat([]byte{seed}, ed25519.SeedSize))
		h := sha512.Sum512(priv.Seed())
		h[0] &= 248
		h[31] &= 127
		h[31] |= 64
		r := new(big.Int).SetBytes(reverse(h[:32]))
		R := priv.Public().(ed25519.PublicKey)

		d := sha512.New()
		d.Write(R)
		d.Write(zero[:])
		d.Write(msg)
		k := new(big.Int).SetBytes(reverse(d.Sum(nil)))
		if new(big.Int).Mod(k.Mod(k, order), big.NewInt(4)).Sign() != 0 {
			continue
		}
		S := make([]byte, 32)
		new(big.Int).Mod(r, order).FillBytes(S)
		sig := append(append([]byte(nil), R...), reverse(S)...)
		if !ed25519.Verify(zero[:], msg, sig) {
			t.Fatal("forged signature does not verify; the forgery is wrong")
		}
		return sig
	}
	t.Fatal("no forgery in 200 tries")
	return nil
}

func reverse(b []byte) []byte {
	r := slices.Clone(b)
	slices.Reverse(r)
	return r
}

// A credential "signed" by the zero fleet ID, which is also what an agent
// with no fleet has, must never verify.
func TestZeroFleetKeyForgery(t *testing.T) {
	member := newKey(t)
	now := time.Now()
	zeroPub, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		t.Fatal(err)
	}
	cert := &ssh.Certificate{
		Nonce:           make([]byte, 32),
		Key:             mustSSHPub(t, member),
		CertType:        ssh.UserCert,
		KeyId:           "forged",
		ValidPrincipals: []string{member.ID().String()},
		ValidAfter:      uint64(now.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(now.Add(time.Hour).Unix()),
		SignatureKey:    zeroPub,
	}
	unsigned := cert.Marshal()
	signed := unsigned[:len(unsigned)-4] // all but the empty signature's length
	cert.Signature = &ssh.Signature{Format: ssh.KeyAlgoED25519, Blob: forgeZeroKeySignature(t, signed)}
	wire := cert.Marshal()
	if err := zeroPub.Verify(signed, cert.Signature); err != nil {
		t.Fatalf("x/crypto/ssh rejects the forgery (%v); this test no longer shows anything", err)
	}

	if _, err := Parse(wire); !errors.Is(err, ErrBadCredential) {
		t.Errorf("Parse(forged zero-key credential) = %v, want ErrBadCredential", err)
	}
	if c, err := Verify(wire, ID{}, member.ID(), now); err == nil {
		t.Fatalf("Verify accepted a forged credential of the zero fleet: %+v", c)
	}
}

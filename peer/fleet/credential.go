package fleet

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// DefaultValidity is how long a credential lasts unless the admin says
// otherwise. Expiry is the only way a membership ends, so it is months, not
// years.
const DefaultValidity = 90 * 24 * time.Hour

// MaxWireLen bounds the wire form of a credential, so that every credential
// Parse accepts fits in a stream header (stream.MaxCredentialLen).
const MaxWireLen = 8191

// keyID is the certificate's KeyId when tunnel issues it. Nothing checks
// it: ssh-keygen issues certificates with any -I label.
const keyID = "tunnel-fleet-member"

// clockSkew backdates a new credential, so that a device whose clock is a
// little behind the admin's accepts it at once.
const clockSkew = 5 * time.Minute

// Credential is a fleet's signed statement that a node is a member until
// ValidBefore. Only Parse and Issue make one, after checking it.
type Credential struct {
	Fleet       ID          // the key that signed it
	Member      identity.ID // the key it certifies, and its only principal
	ValidAfter  time.Time
	ValidBefore time.Time
	Serial      uint64
	cert        *ssh.Certificate
}

// Issue signs a credential for member with the fleet key, valid from a few
// minutes before now (clock skew) until now+validFor.
func Issue(fleet *identity.Key, member identity.ID, validFor time.Duration, now time.Time) (*Credential, error) {
	if validFor <= 0 {
		return nil, fmt.Errorf("issue credential for %s: validity %v is not positive", member, validFor)
	}
	if member.IsZero() {
		return nil, fmt.Errorf("issue credential: no member ID")
	}
	signer, err := ssh.NewSignerFromKey(fleet.PrivateKey())
	if err != nil {
		return nil, fmt.Errorf("issue credential for %s: fleet key: %w", member, err)
	}
	pub, err := ssh.NewPublicKey(member.PublicKey())
	if err != nil {
		return nil, fmt.Errorf("issue credential for %s: member key: %w", member, err)
	}
	var serial [8]byte
	rand.Read(serial[:]) // never fails (crypto/rand, Go 1.24+)
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        ssh.UserCert,
		KeyId:           keyID,
		ValidPrincipals: []string{member.String()},
		ValidAfter:      uint64(max(now.Add(-clockSkew).Unix(), 0)),
		ValidBefore:     uint64(max(now.Add(validFor).Unix(), 0)),
	}
	if err := cert.SignCert(rand.Reader, signer); err != nil {
		return nil, fmt.Errorf("issue credential for %s: sign: %w", member, err)
	}
	// Through the same check as a received credential, so whatever Issue
	// returns, a device accepts.
	c, err := parseWire(cert.Marshal())
	if err != nil {
		return nil, fmt.Errorf("issue credential for %s: %w", member, err)
	}
	return c, nil
}

// Marshal returns the credential as one authorized_keys line, the form
// `tunnel fleet add` prints and `ssh-keygen -s` writes to *-cert.pub.
// `ssh-keygen -L -f` shows it.
func (c *Credential) Marshal() []byte {
	var b strings.Builder
	b.WriteString(c.cert.Type())
	b.WriteByte(' ')
	b.WriteString(base64.StdEncoding.EncodeToString(c.cert.Marshal()))
	b.WriteString(" tunnel-fleet ")
	b.WriteString(c.Fleet.Short())
	b.WriteByte('\n')
	return []byte(b.String())
}

// Wire returns the certificate in SSH wire format, the form a client sends
// in a stream header; at most MaxWireLen bytes.
func (c *Credential) Wire() []byte { return c.cert.Marshal() }

// maxTextLen bounds the text form Parse looks at: base64 of MaxWireLen
// bytes, a type and a comment.
const maxTextLen = 2 * MaxWireLen

// Parse reads a credential in the authorized_keys text form (a single line)
// or the wire form, and checks that it is a well-formed credential with a
// valid signature. It does not check who signed it, for whom or when:
// that is Verify's job. Errors wrap ErrBadCredential.
func Parse(b []byte) (*Credential, error) {
	if len(b) == 0 {
		return nil, malformed("empty")
	}
	// The wire form starts with the 4-byte length of the algorithm name,
	// whose first byte is 0; the text form with the name itself.
	if b[0] == 0 {
		return parseWire(b)
	}
	if len(b) > maxTextLen {
		return nil, malformed("%d bytes of text, more than a credential has (%d)", len(b), maxTextLen)
	}
	text := strings.TrimSpace(string(b))
	if strings.ContainsAny(text, "\r\n") {
		return nil, malformed("more than one line; want a single %s line", ssh.CertAlgoED25519v01)
	}
	fields := strings.Fields(text)
	if len(fields) < 2 {
		return nil, malformed("want a line \"%s AAAA… [comment]\"", ssh.CertAlgoED25519v01)
	}
	if fields[0] != ssh.CertAlgoED25519v01 {
		return nil, malformed("type %q, want %s (an OpenSSH certificate for an Ed25519 key)", truncate(fields[0]), ssh.CertAlgoED25519v01)
	}
	wire, err := base64.StdEncoding.DecodeString(fields[1])
	if err != nil {
		return nil, malformed("base64: %v (truncated?)", err)
	}
	return parseWire(wire)
}

// parseWire parses and checks the wire form; see the package invariants.
func parseWire(b []byte) (*Credential, error) {
	if len(b) == 0 {
		return nil, malformed("empty")
	}
	if len(b) > MaxWireLen {
		return nil, malformed("%d bytes, more than %d", len(b), MaxWireLen)
	}
	pub, err := ssh.ParsePublicKey(b)
	if err != nil {
		return nil, malformed("%v (truncated?)", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, malformed("a %s public key, not a certificate", pub.Type())
	}
	if t := cert.Key.Type(); t != ssh.KeyAlgoED25519 {
		return nil, malformed("certifies a %s key, want %s", t, ssh.KeyAlgoED25519)
	}
	if cert.CertType != ssh.UserCert {
		return nil, malformed("certificate type %d, want a user certificate (%d)", cert.CertType, ssh.UserCert)
	}
	if t := cert.SignatureKey.Type(); t != ssh.KeyAlgoED25519 {
		return nil, malformed("signed by a %s key, want %s (a fleet key)", t, ssh.KeyAlgoED25519)
	}
	if cert.Signature == nil || cert.Signature.Format != ssh.KeyAlgoED25519 {
		return nil, malformed("signature is not %s", ssh.KeyAlgoED25519)
	}
	// The signature covers the bytes as received, everything but the
	// signature itself. Requiring that they re-encode identically means the
	// credential we pass on (Wire) is exactly the one that was signed.
	if !bytes.Equal(cert.Marshal(), b) {
		return nil, malformed("not in canonical encoding")
	}
	signed := b[:len(b)-4-len(ssh.Marshal(cert.Signature))]
	if err := cert.SignatureKey.Verify(signed, cert.Signature); err != nil {
		return nil, malformed("signature does not verify")
	}
	// A critical option restricts where or how a certificate may be used
	// (source-address, force-command); OpenSSH refuses certificates with
	// options it does not enforce, and we enforce none.
	if len(cert.CriticalOptions) > 0 {
		names := make([]string, 0, len(cert.CriticalOptions))
		for name := range cert.CriticalOptions {
			names = append(names, name)
		}
		slices.Sort(names)
		return nil, malformed("critical options %q are not supported", names)
	}
	// CertTimeInfinity (ssh-keygen without -V) and anything else past
	// 2^63 seconds: a membership that never ends cannot be revoked.
	if cert.ValidBefore > math.MaxInt64 {
		return nil, malformed("no expiry (with ssh-keygen, issue it with -V, e.g. -V +30d)")
	}
	if cert.ValidAfter >= cert.ValidBefore {
		return nil, malformed("validity window is empty")
	}
	member, err := idOf(cert.Key)
	if err != nil {
		return nil, malformed("certified key: %v", err)
	}
	fleet, err := idOf(cert.SignatureKey)
	if err != nil {
		return nil, malformed("signature key: %v", err)
	}
	// The all-zero key is a point of small order: its "signatures" can be
	// made without a private key, and the zero ID means "no fleet".
	if fleet.IsZero() {
		return nil, malformed("signed by the zero key")
	}
	if len(cert.ValidPrincipals) != 1 {
		return nil, malformed("%d principals, want exactly one, the member's ID %s", len(cert.ValidPrincipals), member)
	}
	if p := cert.ValidPrincipals[0]; p != member.String() {
		return nil, malformed("principal does not name the certified key: principal %q, key %s", truncate(p), member)
	}
	return &Credential{
		Fleet:       fleet,
		Member:      member,
		ValidAfter:  time.Unix(int64(cert.ValidAfter), 0).UTC(),
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC(),
		Serial:      cert.Serial,
		cert:        cert,
	}, nil
}

// idOf returns the ID of an Ed25519 SSH public key.
func idOf(k ssh.PublicKey) (identity.ID, error) {
	ck, ok := k.(ssh.CryptoPublicKey)
	if !ok {
		return identity.ID{}, fmt.Errorf("%s key has no public key", k.Type())
	}
	pub, ok := ck.CryptoPublicKey().(ed25519.PublicKey)
	if !ok {
		return identity.ID{}, fmt.Errorf("%s key is not Ed25519", k.Type())
	}
	return identity.IDFromPublicKey(pub)
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadCredential}, args...)...)
}

// truncate shortens attacker-controlled text before it goes into an error.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

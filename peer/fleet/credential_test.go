package fleet

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

func newKey(t testing.TB) *identity.Key {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestIssueMarshalParseVerify(t *testing.T) {
	fleetKey, member := newKey(t), newKey(t)
	now := time.Now()
	c, err := Issue(fleetKey, member.ID(), 30*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fleet != fleetKey.ID() || c.Member != member.ID() {
		t.Fatalf("issued fleet %s member %s, want %s %s", c.Fleet, c.Member, fleetKey.ID(), member.ID())
	}
	if want := now.Add(-clockSkew).Unix(); c.ValidAfter.Unix() != want {
		t.Errorf("ValidAfter %v, want %v", c.ValidAfter, time.Unix(want, 0))
	}
	if want := now.Add(30 * 24 * time.Hour).Unix(); c.ValidBefore.Unix() != want {
		t.Errorf("ValidBefore %v, want %v", c.ValidBefore, time.Unix(want, 0))
	}
	if c.cert.KeyId != keyID || c.cert.CertType != ssh.UserCert {
		t.Errorf("KeyId %q type %d", c.cert.KeyId, c.cert.CertType)
	}

	text := c.Marshal()
	wantPrefix := ssh.CertAlgoED25519v01 + " AAAA"
	wantSuffix := " tunnel-fleet " + fleetKey.ID().Short() + "\n"
	if !strings.HasPrefix(string(text), wantPrefix) || !strings.HasSuffix(string(text), wantSuffix) || strings.Count(string(text), "\n") != 1 {
		t.Fatalf("Marshal = %q, want %q…%q on one line", text, wantPrefix, wantSuffix)
	}
	parsed, err := Parse(text)
	if err != nil {
		t.Fatalf("Parse(Marshal()): %v", err)
	}
	if parsed.Fleet != c.Fleet || parsed.Member != c.Member || parsed.Serial != c.Serial ||
		!parsed.ValidAfter.Equal(c.ValidAfter) || !parsed.ValidBefore.Equal(c.ValidBefore) {
		t.Fatalf("text round trip: got %+v, want %+v", parsed, c)
	}

	wire := parsed.Wire()
	if len(wire) >= 8192 || len(wire) > MaxWireLen {
		t.Fatalf("wire form is %d bytes, want < 8192", len(wire))
	}
	if !bytes.Equal(wire, c.Wire()) {
		t.Fatal("wire form changed through the text round trip")
	}
	fromWire, err := Parse(wire)
	if err != nil {
		t.Fatalf("Parse(Wire()): %v", err)
	}
	if !bytes.Equal(fromWire.Marshal(), text) {
		t.Fatalf("wire round trip: %q, want %q", fromWire.Marshal(), text)
	}

	got, err := Verify(wire, fleetKey.ID(), member.ID(), now)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.Member != member.ID() || got.Serial != c.Serial {
		t.Fatalf("Verify returned %+v", got)
	}
}

func TestParseTextVariants(t *testing.T) {
	fleetKey, member := newKey(t), newKey(t)
	c, err := Issue(fleetKey, member.ID(), time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSuffix(string(c.Marshal()), "\n")
	fields := strings.Fields(line)
	accept := map[string]string{
		"no comment":       fields[0] + " " + fields[1],
		"other comment":    fields[0] + " " + fields[1] + " alice@laptop",
		"CRLF":             line + "\r\n",
		"blank lines":      "\n\n" + line + "\n\n",
		"tabs and spaces":  "  " + fields[0] + "\t" + fields[1] + "  \n",
		"no final newline": line,
	}
	for name, in := range accept {
		if _, err := Parse([]byte(in)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	reject := map[string]string{
		"two lines":      line + "\n" + line + "\n",
		"wrong type":     "ssh-rsa-cert-v01@openssh.com " + fields[1],
		"plain key":      string(ssh.MarshalAuthorizedKey(mustSSHPub(t, member))),
		"type only":      fields[0],
		"bad base64":     fields[0] + " " + fields[1][:len(fields[1])-3] + "!!!",
		"options prefix": `cert-authority ` + line,
		"spaces only":    "   \n",
	}
	for name, in := range reject {
		_, err := Parse([]byte(in))
		if !errors.Is(err, ErrBadCredential) {
			t.Errorf("%s: Parse = %v, want ErrBadCredential", name, err)
		}
	}
}

func TestIssueRejects(t *testing.T) {
	fleetKey, member := newKey(t), newKey(t)
	for _, d := range []time.Duration{0, -time.Hour} {
		if _, err := Issue(fleetKey, member.ID(), d, time.Now()); err == nil {
			t.Errorf("Issue with validity %v accepted", d)
		}
	}
	if _, err := Issue(fleetKey, identity.ID{}, time.Hour, time.Now()); err == nil {
		t.Error("Issue for the zero ID accepted")
	}
}

func mustSSHPub(t testing.TB, k *identity.Key) ssh.PublicKey {
	t.Helper()
	pub, err := ssh.NewPublicKey(k.ID().PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

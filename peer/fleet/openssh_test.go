package fleet

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// sshKeygen signs member's public key with the fleet key in dir using real
// OpenSSH and returns the certificate file's contents.
func sshKeygen(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("ssh-keygen", append([]string{"-q", "-s", filepath.Join(dir, KeyFile)}, args...)...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	cert, err := os.ReadFile(filepath.Join(dir, "member-cert.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "member-cert.pub")); err != nil {
		t.Fatal(err)
	}
	return cert
}

func TestOpenSSHInterop(t *testing.T) {
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen is not on PATH (install openssh-client): cannot check interop with OpenSSH")
	}
	dir := t.TempDir()
	fleetKey, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	member, other := newKey(t), newKey(t)
	if err := os.WriteFile(filepath.Join(dir, "member.pub"), ssh.MarshalAuthorizedKey(mustSSHPub(t, member)), 0o644); err != nil {
		t.Fatal(err)
	}
	now := time.Now()

	t.Run("ssh-keygen issues, we verify", func(t *testing.T) {
		text := sshKeygen(t, dir, "-I", "test", "-n", member.ID().String(), "-V", "+1d", "member.pub")
		c, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(ssh-keygen's certificate): %v\n%s", err, text)
		}
		if c.Fleet != fleetKey.ID() || c.Member != member.ID() {
			t.Fatalf("fleet %s member %s", c.Fleet, c.Member)
		}
		if d := c.ValidBefore.Sub(now); d < 23*time.Hour || d > 25*time.Hour {
			t.Errorf("ValidBefore %v is %v from now, want about a day", c.ValidBefore, d)
		}
		if _, err := Verify(c.Wire(), fleetKey.ID(), member.ID(), now); err != nil {
			t.Fatalf("Verify(ssh-keygen's certificate): %v", err)
		}
		_, err = Verify(c.Wire(), fleetKey.ID(), other.ID(), now)
		wantSentinel(t, "ssh-keygen's certificate from another client", err, ErrWrongMember)
	})

	rejects := map[string][]string{
		"principal names someone else": {"-I", "test", "-n", other.ID().String(), "-V", "+1d", "member.pub"},
		"two principals":               {"-I", "test", "-n", member.ID().String() + "," + other.ID().String(), "-V", "+1d", "member.pub"},
		"no expiry":                    {"-I", "test", "-n", member.ID().String(), "member.pub"},
		"host certificate":             {"-h", "-I", "test", "-n", member.ID().String(), "-V", "+1d", "member.pub"},
		"forced command":               {"-I", "test", "-n", member.ID().String(), "-V", "+1d", "-O", "force-command=true", "member.pub"},
	}
	for name, args := range rejects {
		t.Run(name, func(t *testing.T) {
			text := sshKeygen(t, dir, args...)
			_, err := Parse(text)
			if !errors.Is(err, ErrBadCredential) {
				t.Fatalf("Parse = %v, want ErrBadCredential\n%s", err, text)
			}
			t.Log(err)
		})
	}

	t.Run("ssh-keygen reads what we issue", func(t *testing.T) {
		c, err := Issue(fleetKey, member.ID(), time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "ours-cert.pub")
		if err := os.WriteFile(path, c.Marshal(), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ssh-keygen", "-L", "-f", path).CombinedOutput()
		if err != nil {
			t.Fatalf("ssh-keygen -L: %v\n%s", err, out)
		}
		for _, want := range []string{"user certificate", member.ID().String(), keyID, "Critical Options: (none)"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("ssh-keygen -L output lacks %q:\n%s", want, out)
			}
		}
	})
}

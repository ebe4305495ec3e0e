package roles

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/socks"
)

// A socksd beyond loopback needs a password file (whoever reaches it
// would dial with this node's key); --fallback direct stays loopback-only
// even with one; the password file is read, and refused, before anything
// starts.
func TestClientConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.auth")
	if _, err := socks.SetPassword(good, "alice", "pw", socks.MinHashCost); err != nil {
		t.Fatal(err)
	}
	open := filepath.Join(dir, "open.auth")
	data, _ := os.ReadFile(good)
	os.WriteFile(open, data, 0o644)
	plain := filepath.Join(dir, "plain.auth")
	os.WriteFile(plain, []byte("alice:pw\n"), 0o600)

	for _, tc := range []struct {
		listen, auth string
		direct       bool
		want         string // "" if fine
	}{
		{"127.0.0.1:1080", "", false, ""},
		{"[::1]:1080", "", false, ""},
		{"localhost:1080", "", true, ""},
		{"0.0.0.0:1080", "", false, "not loopback"},
		{":1080", "", false, "not loopback"},
		{"192.0.2.1:1080", "", false, "--auth FILE"},
		{"0.0.0.0:1080", good, false, ""},
		{"127.0.0.1:1080", good, true, ""},
		{"0.0.0.0:1080", good, true, "open proxy"},
		{"0.0.0.0:1080", open, false, "chmod 600"},
		{"127.0.0.1:1080", plain, false, "line 1"},
		{"127.0.0.1:1080", filepath.Join(dir, "missing"), false, "no such file"},
	} {
		cfg := ClientConfig{Listen: tc.listen, Auth: tc.auth, FallbackDirect: tc.direct, RelayListen: "127.0.0.1:7443"}
		err := cfg.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("listen %s auth %q direct %v: %v", tc.listen, tc.auth, tc.direct, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("listen %s auth %q direct %v: %v, want it to say %q", tc.listen, tc.auth, tc.direct, err, tc.want)
		}
	}
}

package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"redis://10.0.0.3:6379/0", "redis://10.0.0.3:6379/0"},
		{"redis://user:s3cret@10.0.0.3:6379/0", "redis://user:xxxxx@10.0.0.3:6379/0"},
		{"rediss://:s3cret@redis.example:6380/2", "rediss://:xxxxx@redis.example:6380/2"},
		{"redis://user@h:1/0", "redis://user@h:1/0"}, // a user alone is no secret
		{"redis://u:s3cret@h:1/0?dial_timeout=3&password=s3cret", "redis://u:xxxxx@h:1/0?dial_timeout=3&password=xxxxx"},
		{"redis://h:1/0?Pass=s3cret&db=1&auth_token=s3cret", "redis://h:1/0?Pass=xxxxx&db=1&auth_token=xxxxx"},
		// Unparseable: everything up to the last @ goes.
		{"redis://u:s3cret@h:bad/0", "redis://xxxxx@h:bad/0"},
		{"redis://u:s3%zzcret@h/0", "redis://xxxxx@h/0"},
		{"redis://u:s3 cret@h/0", "redis://xxxxx@h/0"},
		// A password with '/', '?' or '#' in it: the parser ends the
		// userinfo too early, RedactURL does not.
		{"redis://u:s3/cret@h:1/0", "redis://xxxxx@h:1/0"},
		{"redis://u:s3?cret@h:1/0", "redis://xxxxx@h:1/0"},
		{"redis://u:s3#cret@h:1/0", "redis://xxxxx@h:1/0"},
		{"u:s3cret@h:1", "xxxxx@h:1"}, // no scheme
		{"redis://h:1/0?password=s3cret&x=%zz", "redis://h:1/0?password=xxxxx&x=%zz"},
		{"memory", "memory"},
		{"", ""},
	} {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(RedactURL(tc.in), "cret") {
			t.Errorf("RedactURL(%q) = %q still holds the secret", tc.in, RedactURL(tc.in))
		}
	}
}

// TestRedisURLErrorsHideThePassword feeds bad URLs holding a password to
// everything that reports on a URL: no error may quote the password, and
// each names the URL redacted.
func TestRedisURLErrorsHideThePassword(t *testing.T) {
	const pw = "Pa55w0rd"
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, c := range []RedisConfig{
		{URL: "redis://u:" + pw + "@h:bad/0"},
		{URL: "redis://u:" + pw + "%zz@h:1/0"},
		{URL: "redis://u:" + pw + "@[::1/0"},
		{URL: "redis://u:" + pw + "@h:1/x"},
		{URL: "redis://u:" + pw + "@h:1/0?password=" + pw},
		{URL: "redis://u:" + pw + "@h:1/0?dial_timeout=zz"},
		{URL: "http://u:" + pw + "@h:1/0"},
		{URL: "u:" + pw + "@h:1"},
		{URL: "redis://u:" + pw + "@h:1/0", CAFile: notPEM},         // a CA file without TLS
		{URL: "rediss://u:" + pw + "@h:1/0", CAFile: notPEM},        // not PEM
		{URL: "rediss://u:" + pw + "@h:1/0", CAFile: dir + "/none"}, // missing
	} {
		err := c.Check()
		if err == nil {
			t.Errorf("Check(%+v) accepted", c)
			continue
		}
		if strings.Contains(err.Error(), "55w0") {
			t.Errorf("Check(%+v) = %q: the password is in the error", c, err)
		}
		_, err2 := NewRedisPresence(c, newID(t), "127.0.0.1:1", zerolog.Nop())
		if err2 == nil || strings.Contains(err2.Error(), "55w0") {
			t.Errorf("NewRedisPresence(%+v) = %v: want an error without the password", c, err2)
		}
		if c.CAFile == "" && !strings.Contains(err.Error(), "xxxxx") {
			t.Errorf("Check(%+v) = %q: does not name the URL (redacted)", c, err)
		}
		t.Logf("%v", err2)
	}
	for _, u := range []string{"redis://u:" + pw + "@h:1/0", "rediss://h:1/0?dial_timeout=3", "redis://h"} {
		if err := (RedisConfig{URL: u}).Check(); err != nil {
			t.Errorf("Check(%s): %v", u, err)
		}
	}
}

package peer

import (
	"errors"
	"testing"
)

func TestParsePortSpec(t *testing.T) {
	good := map[string]Port{
		"22":                  {22, "localhost:22"},
		"22:22":               {22, "localhost:22"},
		"2222:22":             {22, "localhost:2222"},
		"8080:80":             {80, "localhost:8080"},
		"192.168.1.5:80:8080": {8080, "192.168.1.5:80"},
		"nas.lan:80:8080":     {8080, "nas.lan:80"},
		"nas.lan:80":          {80, "nas.lan:80"},
		"[::1]:80:8080":       {8080, "[::1]:80"},
		"[fe80::1]:22":        {22, "[fe80::1]:22"},
		"65535":               {65535, "localhost:65535"},
	}
	for in, want := range good {
		got, err := ParsePortSpec(in)
		if err != nil || got != want {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "99999", "abc", "1:2:3:4", ":22", "22:", "-1", "[::1", "[]:22", "[::1]22", "host::22", "22:0", "1e3"} {
		if p, err := ParsePortSpec(in); err == nil || !errors.Is(err, ErrBadSpec) {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want ErrBadSpec", in, p, err)
		}
	}
}

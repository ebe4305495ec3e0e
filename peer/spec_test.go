package peer

import (
	"errors"
	"testing"
)

func TestParsePortSpec(t *testing.T) {
	good := map[string]Port{
		"22":                  {Remote: 22, Target: "localhost:22"},
		"22:22":               {Remote: 22, Target: "localhost:22"},
		"2222:22":             {Remote: 22, Target: "localhost:2222"},
		"8080:80":             {Remote: 80, Target: "localhost:8080"},
		"192.168.1.5:80:8080": {Remote: 8080, Target: "192.168.1.5:80"},
		"nas.lan:80:8080":     {Remote: 8080, Target: "nas.lan:80"},
		"nas.lan:80":          {Remote: 80, Target: "nas.lan:80"},
		"[::1]:80:8080":       {Remote: 8080, Target: "[::1]:80"},
		"[fe80::1]:22":        {Remote: 22, Target: "[fe80::1]:22"},
		"65535":               {Remote: 65535, Target: "localhost:65535"},
	}
	for in, want := range good {
		got, err := ParsePortSpec(in)
		if err != nil || got.Remote != want.Remote || got.Target != want.Target {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "99999", "abc", "1:2:3:4", ":22", "22:", "-1", "[::1", "[]:22", "[::1]22", "host::22", "22:0", "1e3"} {
		if p, err := ParsePortSpec(in); err == nil || !errors.Is(err, ErrBadSpec) {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want ErrBadSpec", in, p, err)
		}
	}
}

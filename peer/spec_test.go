package peer

import (
	"errors"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
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
	for _, in := range []string{"", "0", "99999", "abc", "1:2:3:4", ":22", "22:", "-1", "[::1", "[]:22", "[::1]22", "host::22", "22:0", "1e3", "[::1]:80:8080:9", "]:1", "a]:1:2", "[[::1]:22"} {
		if p, err := ParsePortSpec(in); err == nil || !errors.Is(err, ErrBadSpec) {
			t.Errorf("ParsePortSpec(%q) = %+v, %v; want ErrBadSpec", in, p, err)
		}
	}
}

func TestPublishPorts(t *testing.T) {
	id, _ := identity.Generate()
	fleetKey, _ := identity.Generate()
	ports, fleetID, err := Publish{Public: []string{"80"}, Private: []string{"2222:22," + id.ID().String()},
		Protected: []string{"5432"}, Fleet: fleetKey.ID().String(), ProxyProtocol: []string{"80"}}.Ports()
	if err != nil || len(ports) != 3 || fleetID != fleetKey.ID() {
		t.Fatalf("Ports = %+v, %v, %v", ports, fleetID, err)
	}
	if !ports[0].ProxyProtocol || ports[1].Access != Private || ports[1].Allowed[0] != id.ID() || ports[2].Access != Protected {
		t.Fatalf("ports %+v", ports)
	}
	for name, p := range map[string]Publish{
		"nothing":             {},
		"twice":               {Public: []string{"22"}, Private: []string{"22," + id.ID().String()}},
		"protected, no fleet": {Protected: []string{"22"}},
		"bad fleet":           {Protected: []string{"22"}, Fleet: "garbage"},
		"bad spec":            {Public: []string{"0"}},
		"proxy unpublished":   {Public: []string{"22"}, ProxyProtocol: []string{"99"}},
		"proxy not a port":    {Public: []string{"22"}, ProxyProtocol: []string{"ssh"}},
	} {
		_, _, err := p.Ports()
		if !errors.Is(err, ErrBadSpec) {
			t.Errorf("%s: %v, want ErrBadSpec", name, err)
		}
		// Only a spec that does not parse says so; the rest say what is wrong.
		if name != "bad spec" && strings.HasPrefix(err.Error(), "bad port spec") {
			t.Errorf("%s: %q", name, err)
		}
	}
}

package forward

import (
	"errors"
	"strings"
	"testing"
)

const testID = "ybndrfg8ejkmcpqxot1uwisza345h769ybndrfg8ejkmcpqxot1u"

func TestParseSpec(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Spec
	}{
		{"2222:garage:22", Spec{"127.0.0.1", 2222, "garage.tunnel", 22}},
		{"2222:garage.tunnel:22", Spec{"127.0.0.1", 2222, "garage.tunnel", 22}},
		{"2222:garage.tunnel.:22", Spec{"127.0.0.1", 2222, "garage.tunnel", 22}},
		{"2222:Garage.TUNNEL:22", Spec{"127.0.0.1", 2222, "Garage.TUNNEL", 22}},
		{"0:" + testID + ":22", Spec{"127.0.0.1", 0, testID + ".tunnel", 22}},
		{"127.0.0.1:8080:app." + testID + ":80", Spec{"127.0.0.1", 8080, "app." + testID + ".tunnel", 80}},
		{"[::1]:8022:garage:22", Spec{"::1", 8022, "garage.tunnel", 22}},
		{"[fe80::1%lo]:8022:garage:22", Spec{"fe80::1%lo", 8022, "garage.tunnel", 22}},
		{"localhost:5432:db:5432", Spec{"localhost", 5432, "db.tunnel", 5432}},
		{"0.0.0.0:5900:vnc:5900", Spec{"0.0.0.0", 5900, "vnc.tunnel", 5900}},
		{"*:5900:vnc:5900", Spec{"", 5900, "vnc.tunnel", 5900}},
		{"lan-host.example:1:x:65535", Spec{"lan-host.example", 1, "x.tunnel", 65535}},
		{"65535:x:1", Spec{"127.0.0.1", 65535, "x.tunnel", 1}},
	} {
		got, err := ParseSpec(tc.in)
		if err != nil {
			t.Errorf("ParseSpec(%q): %v", tc.in, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParseSpec(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
		// The canonical form reads back the same.
		again, err := ParseSpec(got.String())
		if err != nil || again != got {
			t.Errorf("ParseSpec(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

func TestParseSpecErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "fields"},
		{"2222", "fields"},
		{"2222:garage", "fields"},
		{"a:b:c:d:e", "too many ':'"},
		{"::1:8022:garage:22", "too many ':'"},
		{"[::1:8022:garage:22", "no closing bracket"},
		{"[::1]8022:garage:22", "want ':' after ]"},
		{"[::1]:8022:garage", "fields"},
		{"[127.0.0.1]:8022:garage:22", "IPv6 address inside brackets"},
		{"[]:8022:garage:22", "IPv6 address inside brackets"},
		{"2222:[::1]:22", "not an address in brackets"},
		{":2222:garage:22", "LISTENHOST \"\": empty"},
		{"bad_host:2222:garage:22", "not allowed in a name"},
		{"-x:2222:garage:22", "starts or ends with '-'"},
		{"x..y:2222:garage:22", "empty label"},
		{"70000:garage:22", "LOCALPORT \"70000\""},
		{"-1:garage:22", "LOCALPORT"},
		{"+22:garage:22", "LOCALPORT"},
		{" 22:garage:22", "LOCALPORT"},
		{"0x16:garage:22", "LOCALPORT"},
		{":garage:22", "LOCALPORT \"\""},
		{"2222:garage:0", "PORT \"0\": want 1 to 65535"},
		{"2222:garage:65536", "PORT \"65536\""},
		{"2222:garage:", "PORT \"\""},
		{"2222:garage:ssh", "PORT \"ssh\""},
		{"2222::22", "HOST \"\": empty"},
		{"2222:10.0.0.1:22", "an address"},
		{"2222:.tunnel:22", "HOST"},
		{"2222:gar age:22", "not allowed in a name"},
		{"2222:garäge:22", "only ASCII"},
		{"2222:" + strings.Repeat("a", 64) + ":22", "longer than 63"},
		{"2222:" + strings.Repeat("a.", 130) + "b:22", "longer than 253"},
		{strings.Repeat("1", 600), "longer than 512"},
	} {
		_, err := ParseSpec(tc.in)
		if err == nil {
			t.Errorf("ParseSpec(%q) succeeded, want an error containing %q", tc.in, tc.want)
			continue
		}
		if !errors.Is(err, ErrSpec) {
			t.Errorf("ParseSpec(%q): %v is not ErrSpec", tc.in, err)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "[LISTENHOST:]LOCALPORT:HOST:PORT") {
			t.Errorf("ParseSpec(%q): %q, want it to contain %q and the syntax", tc.in, err, tc.want)
		}
	}
}

func TestCheckListen(t *testing.T) {
	for _, tc := range []struct {
		in     string
		remote bool
	}{
		{"2222:g:22", false},
		{"127.0.0.1:2222:g:22", false},
		{"127.1.2.3:2222:g:22", false},
		{"[::1]:2222:g:22", false},
		{"localhost:2222:g:22", false},
		{"LocalHost:2222:g:22", false},
		{"0.0.0.0:2222:g:22", true},
		{"*:2222:g:22", true},
		{"[::]:2222:g:22", true},
		{"192.168.1.5:2222:g:22", true},
		{"[fe80::1%lo]:2222:g:22", true},
		{"pi.local:2222:g:22", true},
		{"localhost.evil.example:2222:g:22", true},
	} {
		s, err := ParseSpec(tc.in)
		if err != nil {
			t.Fatalf("ParseSpec(%q): %v", tc.in, err)
		}
		err = s.CheckListen(false)
		if tc.remote != (err != nil) {
			t.Errorf("CheckListen(%q, false) = %v, want remote=%v", tc.in, err, tc.remote)
		}
		if err != nil && (!errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "--allow-remote")) {
			t.Errorf("CheckListen(%q): %q, want ErrRemote naming --allow-remote", tc.in, err)
		}
		if err := s.CheckListen(true); err != nil {
			t.Errorf("CheckListen(%q, true) = %v", tc.in, err)
		}
	}
}

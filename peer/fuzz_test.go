package peer

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Port specs, -private lists and the rest of `tunnel publish`'s flags come
// from command lines, unit files and environment variables.

// fixedID is a deterministic ID, so that the committed corpus names it.
func fixedID(seed byte) identity.ID {
	return identity.FromPrivateKey(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))).ID()
}

// checkSpec checks what ParsePortSpec made of spec: a dialable target and a
// published port, where the target's host is the spec's own host field
// (localhost when it has none) and both ports its numbers.
func checkSpec(t *testing.T, spec string, p Port) {
	t.Helper()
	host, portText, err := net.SplitHostPort(p.Target)
	local, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || host == "" || local < 1 || local > 65535 || strconv.Itoa(local) != portText || p.Remote == 0 {
		t.Fatalf("ParsePortSpec(%q) = %+v", spec, p)
	}
	// [host:]local[:remote]: the host is the first field, bracketed or
	// not, or absent; the ports are the fields after it.
	var fields []string
	switch {
	case strings.HasPrefix(spec, "["+host+"]:"):
		fields = strings.Split(spec[len(host)+3:], ":")
	case host != "localhost" || strings.HasPrefix(spec, "localhost:"):
		if !strings.HasPrefix(spec, host+":") {
			t.Fatalf("ParsePortSpec(%q) dials host %q, which is not the spec's", spec, host)
		}
		fields = strings.Split(spec[len(host)+1:], ":")
	default:
		fields = strings.Split(spec, ":")
	}
	if len(fields) == 1 {
		fields = append(fields, fields[0])
	}
	if len(fields) != 2 {
		t.Fatalf("ParsePortSpec(%q) = %+v from %d port fields", spec, p, len(fields))
	}
	for i, want := range []int{local, int(p.Remote)} {
		if n, err := strconv.ParseUint(fields[i], 10, 16); err != nil || int(n) != want {
			t.Fatalf("ParsePortSpec(%q) = %+v: port %d is not field %q", spec, p, want, fields[i])
		}
	}
}

func FuzzParsePortSpec(f *testing.F) {
	for _, s := range []string{"22", "2222:22", "192.168.1.5:80:8080", "[::1]:80:8080", "[::1]:80:8080:9", "nas.lan:80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		p, err := ParsePortSpec(spec)
		if err != nil {
			if !errors.Is(err, ErrBadSpec) || p.Target != "" || p.Remote != 0 {
				t.Fatalf("ParsePortSpec(%q) = %+v, %v: want a zero Port and ErrBadSpec", spec, p, err)
			}
			return
		}
		if p.Access != Public || p.Allowed != nil || p.ProxyProtocol {
			t.Fatalf("ParsePortSpec(%q) = %+v", spec, p)
		}
		checkSpec(t, spec, p)
		// The target and the published port, written as a spec, parse
		// to the same port.
		host, local, _ := net.SplitHostPort(p.Target)
		canon := net.JoinHostPort(host, local) + ":" + strconv.Itoa(int(p.Remote))
		if again, err := ParsePortSpec(canon); err != nil || again.Target != p.Target || again.Remote != p.Remote {
			t.Fatalf("ParsePortSpec(%q) = %+v; %q parses to %+v, %v", spec, p, canon, again, err)
		}
	})
}

func FuzzParsePrivate(f *testing.F) {
	a, b := fixedID(1).String(), fixedID(2).String()
	f.Add("22," + a)
	f.Add("2222:22, " + a + "," + strings.ToUpper(b) + "," + a)
	f.Add("22,")
	f.Fuzz(func(t *testing.T, arg string) {
		p, err := ParsePrivate(arg)
		if err != nil {
			if !errors.Is(err, ErrBadSpec) {
				t.Fatalf("ParsePrivate(%q): %v does not wrap ErrBadSpec", arg, err)
			}
			return
		}
		fields := strings.Split(arg, ",")
		checkSpec(t, fields[0], p)
		if p.Access != Private || len(p.Allowed) == 0 || len(p.Allowed) > len(fields)-1 {
			t.Fatalf("ParsePrivate(%q) = %+v", arg, p)
		}
		for i, id := range p.Allowed {
			if id.Weak() || slices.Contains(p.Allowed[:i], id) {
				t.Fatalf("ParsePrivate(%q) allows %s twice, or a weak key", arg, id)
			}
			if !slices.ContainsFunc(fields[1:], func(f string) bool { return strings.EqualFold(strings.TrimSpace(f), id.String()) }) {
				t.Fatalf("ParsePrivate(%q) allows %s, which it does not list", arg, id)
			}
		}
	})
}

// FuzzPublishPorts fuzzes the flags of `tunnel publish`, each list one
// flag value per line.
func FuzzPublishPorts(f *testing.F) {
	a, fleet := fixedID(1).String(), fixedID(3).String()
	f.Add("80\n443", "2222:22,"+a, "5432", fleet, "80")
	f.Add("22", "22,"+a, "", "", "")
	f.Add("", "", "22", "", "")
	f.Fuzz(func(t *testing.T, public, private, protected, fleetArg, proxy string) {
		lines := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, "\n")
		}
		pub := Publish{Public: lines(public), Private: lines(private), Protected: lines(protected),
			Fleet: fleetArg, ProxyProtocol: lines(proxy)}
		ports, fleetID, err := pub.Ports()
		if err != nil {
			if !errors.Is(err, ErrBadSpec) || ports != nil {
				t.Fatalf("%+v: Ports = %v, %v: want no ports and ErrBadSpec", pub, ports, err)
			}
			return
		}
		// Every spec published, in order, each remote port once; a
		// fleet exactly when one was given, as it was given.
		var want []Access
		for _, l := range []struct {
			n int
			a Access
		}{{len(pub.Public), Public}, {len(pub.Private), Private}, {len(pub.Protected), Protected}} {
			for range l.n {
				want = append(want, l.a)
			}
		}
		if len(ports) == 0 || len(ports) != len(want) {
			t.Fatalf("%+v: %d ports, want %d", pub, len(ports), len(want))
		}
		seen := map[uint16]bool{}
		for i, p := range ports {
			if p.Access != want[i] || seen[p.Remote] {
				t.Fatalf("%+v: port %d is %+v", pub, i, p)
			}
			seen[p.Remote] = true
			asked := slices.ContainsFunc(pub.ProxyProtocol, func(s string) bool {
				n, err := strconv.ParseUint(s, 10, 16)
				return err == nil && n == uint64(p.Remote)
			})
			if p.ProxyProtocol != asked {
				t.Fatalf("%+v: port %d has PROXY headers %v", pub, p.Remote, p.ProxyProtocol)
			}
		}
		if fleetID.IsZero() != (fleetArg == "") || (fleetArg != "" && !strings.EqualFold(fleetID.String(), fleetArg)) {
			t.Fatalf("%+v: fleet %s", pub, fleetID)
		}
	})
}

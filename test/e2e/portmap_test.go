//go:build linux

package e2e

// A home router that grants port mappings (transport/portmap,
// transport/mapping.go): Debian's miniupnpd (NAT-PMP and PCP, or UPnP-IGD
// alone; nftables backend) on nat1, the device's router, of the topology
// of netns_test.go.
//
// miniupnpd refuses to map on a reserved outside address, TEST-NET-3
// (the topology's 203.0.113.0/24) included, and has no option to allow
// one. So nat1 gets a second outside address, routerPublicIP, which
// miniupnpd maps on (ext_ip); nat2 and pub reach it on the same wire. It
// is an ordinary public address, used only inside the test's namespaces,
// which have no route off the machine.
//
// miniupnpd adds its DNAT rules to nftables chains of its own (table inet
// filter, made here as its nft_init.sh would, but with an accepting
// forward policy so as not to override the topology's iptables rules),
// and the router's FORWARD chain lets in what they translated.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const routerPublicIP = "11.0.113.11"

// portMapperTools are the paths of miniupnpd and nft, or why they are
// missing.
var portMapperTools struct {
	miniupnpd, nft, missing string
}

func needPortMapper(t *testing.T) {
	t.Helper()
	needNetns(t)
	pm := &portMapperTools
	if pm.miniupnpd == "" && pm.missing == "" {
		var missing []string
		var err error
		if pm.miniupnpd, err = lookPath("miniupnpd"); err != nil {
			missing = append(missing, "miniupnpd (miniupnpd-nftables)")
		}
		if pm.nft, err = lookPath("nft"); err != nil {
			missing = append(missing, "nft (nftables)")
		}
		if len(missing) > 0 {
			pm.missing = "port-mapping tests: missing " + strings.Join(missing, ", ") +
				" (as root: apt-get install miniupnpd-nftables nftables)"
		}
	}
	if pm.missing != "" {
		if os.Getenv("CI") != "" {
			t.Fatal(pm.missing)
		}
		t.Skip(pm.missing)
	}
}

// StartPortMapper runs miniupnpd on nat1 (NAT-PMP and PCP, for the
// device's home 10.1.0.0/24 only), mapping on routerPublicIP. It returns
// the daemon's process; it stops before the namespaces go.
func (tp *Topology) StartPortMapper(t *testing.T) *proc {
	t.Helper()
	return tp.startPortMapper(t, false)
}

// StartPortMapperUPnP is StartPortMapper with UPnP-IGD instead of NAT-PMP
// and PCP: SSDP and HTTP on nat1's home side, nothing on port 5351.
func (tp *Topology) StartPortMapperUPnP(t *testing.T) *proc {
	t.Helper()
	return tp.startPortMapper(t, true)
}

func (tp *Topology) startPortMapper(t *testing.T, upnp bool) *proc {
	t.Helper()
	needPortMapper(t)
	tp.must(t, tp.NAT1, netnsTools.ip, "addr", "add", routerPublicIP+"/32", "dev", wanIf)
	for _, ns := range []string{tp.NAT2, tp.Pub} {
		tp.must(t, ns, netnsTools.ip, "route", "add", routerPublicIP+"/32", "dev", wanIf)
	}
	tp.must(t, tp.NAT1, netnsTools.iptables, "-w", "-I", "FORWARD", "1", "-i", wanIf,
		"-m", "conntrack", "--ctstate", "DNAT", "-j", "ACCEPT")

	dir := t.TempDir()
	ruleset := filepath.Join(dir, "miniupnpd.nft")
	writeFile(t, ruleset, `table inet filter {
	chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
	chain miniupnpd { }
	chain prerouting { type nat hook prerouting priority -100; policy accept; jump prerouting_miniupnpd; }
	chain postrouting { type nat hook postrouting priority 100; policy accept; jump postrouting_miniupnpd; }
	chain prerouting_miniupnpd { }
	chain postrouting_miniupnpd { }
}
`)
	tp.must(t, tp.NAT1, portMapperTools.nft, "-f", ruleset)

	conf := filepath.Join(dir, "miniupnpd.conf")
	writeFile(t, conf, strings.Join([]string{
		"ext_ifname=" + wanIf,
		"ext_ip=" + routerPublicIP,
		"listening_ip=" + lanIf,
		fmt.Sprintf("enable_natpmp=%s", yesNo(!upnp)),
		fmt.Sprintf("enable_upnp=%s", yesNo(upnp)),
		"secure_mode=yes",
		"uuid=6c0b7d9e-3f1a-4e2b-9c8d-7a6b5c4d3e2f",
		"allow 1024-65535 10.1.0.0/24 1024-65535",
		"deny 0-65535 0.0.0.0/0 0-65535",
	}, "\n")+"\n")
	p := tp.Start(t, tp.NAT1, "miniupnpd", portMapperTools.miniupnpd, "-d", "-f", conf, "-P", filepath.Join(dir, "pid"))
	ready := "Listening for NAT-PMP/PCP traffic"
	if upnp {
		ready = "HTTP listening on port"
	}
	if !p.waitLog(ready, 1, 10*time.Second) {
		t.Fatalf("miniupnpd did not start:\n%s", p.log())
	}
	return p
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// With the router's mapping on the device's side, two symmetric NATs end
// direct (without it they stay relayed: TestPathSymmetricRelayed), and a
// symmetric device behind such a router still ends direct with a cone
// client (where the birthday attempt of hardnat.go runs as well). A router
// with UPnP-IGD only does the same for two symmetric NATs, found once PCP
// and NAT-PMP get port unreachable.
func TestPathPortMap(t *testing.T) {
	for _, c := range []struct {
		dev, cli NATMode
		upnp     bool
	}{{NATSymmetric, NATSymmetric, false}, {NATSymmetric, NATCone, false}, {NATSymmetric, NATSymmetric, true}} {
		cell := fmt.Sprintf("device-%s+router/client-%s", c.dev, c.cli)
		added := "PCP MAP: added mapping"
		if c.upnp {
			cell = fmt.Sprintf("device-%s+upnp/client-%s", c.dev, c.cli)
			added = "AddPortMapping: ext port"
		}
		t.Run(cell, func(t *testing.T) {
			t.Parallel()
			needPortMapper(t)
			requireSystem(t)
			tp := NewTopology(t, c.dev, c.cli)
			router := tp.startPortMapper(t, c.upnp)
			if c.upnp {
				// Runs once the device has stopped, before the router does: a
				// mapping without a lease would otherwise outlive it.
				t.Cleanup(func() {
					if !router.waitLog("DeletePortMapping", 1, 3*time.Second) {
						t.Errorf("the device deleted no mapping on exit:\n%s", router.log())
					}
				})
			}
			relayAddr := fmt.Sprintf("%s:%d", tp.PubIP, natRelayPort)
			w := startWorld(t, tp, worldRelay{listen: relayAddr, dev: relayAddr, cli: relayAddr})
			if !router.waitLog(added, 1, 10*time.Second) {
				t.Fatalf("the device asked the router for no mapping:\n%s", router.log())
			}
			w.directTransfer(t, cell, 15*time.Second)
			if _, via := w.path(t); c.cli == NATSymmetric && !strings.HasPrefix(via, routerPublicIP+":") {
				t.Fatalf("direct path via %q, want the router's mapping on %s", via, routerPublicIP)
			}
		})
	}
}

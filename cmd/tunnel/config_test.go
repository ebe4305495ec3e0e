package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

// loadWith runs command name of the real app with args, its Action
// replaced by the config loader; it returns the context after loading.
func loadWith(t *testing.T, name string, env map[string]string, args ...string) (*cli.Context, *loadedConfig, error) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	app := newApp()
	var cmd *cli.Command
	for _, c := range app.Commands {
		if c.Name == name {
			cmd = c
		}
	}
	var got *cli.Context
	var lc *loadedConfig
	var loadErr error
	cmd.Action = func(c *cli.Context) error {
		own := []string(nil)
		if name == "publish" {
			own = []string{"public", "private", "protected", "proxy-protocol", "fleet"}
		}
		got = c
		lc, loadErr = applyConfig(c, own)
		return loadErr
	}
	cmd.Subcommands = nil
	err := app.RunContext(context.Background(), append([]string{"tunnel", "--home", t.TempDir(), name}, args...))
	if err == nil {
		err = loadErr
	}
	return got, lc, err
}

func writeYAML(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Flags and environment variables win over the file; the file sets the
// rest, lists for repeatable flags included, and the global flags too.
func TestConfigPrecedence(t *testing.T) {
	f := writeYAML(t, `listen: 127.0.0.1:1999
relay-listen: 127.0.0.1:7999
path: relay
fallback: direct
allow-local-users: true
bind: [2222:a.tunnel:22, "127.0.0.1:2223:b.tunnel:22"]
log-level: debug
`)
	c, _, err := loadWith(t, "socksd", map[string]string{"TUNNEL_RELAY_LISTEN": "127.0.0.1:7001"},
		"--config", f, "--listen", "127.0.0.1:1000")
	if err != nil {
		t.Fatal(err)
	}
	for flag, want := range map[string]string{
		"listen":       "127.0.0.1:1000", // command line
		"relay-listen": "127.0.0.1:7001", // environment
		"path":         "relay",          // file
		"fallback":     "direct",
		"log-level":    "debug", // a global flag, from the file
	} {
		if got := c.String(flag); got != want {
			t.Errorf("--%s = %q, want %q", flag, got, want)
		}
	}
	if !c.Bool("allow-local-users") {
		t.Error("allow-local-users: true in the file did not set the flag")
	}
	if got := strings.Join(c.StringSlice("bind"), " "); got != "2222:a.tunnel:22 127.0.0.1:2223:b.tunnel:22" {
		t.Errorf("bind = %q, want both list entries", got)
	}
	// A repeatable flag on the command line replaces the file's list.
	c, _, err = loadWith(t, "socksd", nil, "--config", f, "--bind", "9:c.tunnel:9")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.StringSlice("bind"), " "); got != "9:c.tunnel:9" {
		t.Errorf("bind with --bind given = %q, want only the command line's", got)
	}
}

// Bad files are usage errors naming the file, the line and the key.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ cmd, text, want string }{
		{"relay", "listen: 0.0.0.0:7443\nbogus: 1\n", `line 2: unknown key "bogus"`},
		{"relay", "max-conns: many\n", `line 1: max-conns: "many": want a whole number`},
		{"relay", "lookup-rate: fast\n", `lookup-rate: "fast": want a number`},
		{"socksd", "allow-remote: yes\n", `allow-remote: "yes": want true or false`},
		{"relay", "listen: [a, b]\n", "listen: a list, but --listen takes one value"},
		{"relay", "listen: {a: b}\n", "listen: want a value, not a mapping"},
		{"relay", "listen:\n", "listen: no value"},
		{"relay", "- listen\n", "want a mapping of flag names"},
		{"relay", "listen: [unterminated\n", "yaml:"},
		{"relay", "config: other.yaml\n", `unknown key "config"`},
		{"socksd", "bind: [[1, 2]]\n", "bind: want a list of values"},
		{"relay", "ports: []\n", `unknown key "ports"`}, // publish's only
		{"publish", "ports: [{spec: 22, mode: secret}]\n", `mode "secret"`},
		{"publish", "ports: [{spec: 22, mode: private}]\n", "a private port needs ids"},
		{"publish", "ports: [{spec: 22, color: red}]\n", `unknown key "color"`},
		{"publish", "ports: [{mode: public}]\n", "no spec"},
		{"publish", "ports: [{spec: 22, ids: [x]}]\n", "ids are for private ports only"},
		{"publish", "ports: {spec: 22}\n", "want a list"},
	} {
		_, _, err := loadWith(t, tc.cmd, nil, "--config", writeYAML(t, tc.text))
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "c.yaml") {
			t.Errorf("%s with %q: %v, want a usage error naming c.yaml and saying %q", tc.cmd, tc.text, err, tc.want)
		}
	}
	_, _, err := loadWith(t, "relay", nil, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v, want a usage error naming it", err)
	}
}

// A flag the file names is looked up on the command as it runs: one
// added to a command is a key with no change to the loader.
func TestConfigPicksUpNewFlags(t *testing.T) {
	app := newApp()
	for _, c := range app.Commands {
		if c.Name == "relay" {
			c.Flags = append(c.Flags, &cli.StringFlag{Name: "added-later"}, &cli.BoolFlag{Name: "added-switch"})
			c.Action = func(c *cli.Context) error {
				if _, err := applyConfig(c, nil); err != nil {
					return err
				}
				if c.String("added-later") != "127.0.0.1:9100" || !c.Bool("added-switch") {
					t.Errorf("added-later = %q, added-switch = %v", c.String("added-later"), c.Bool("added-switch"))
				}
				return nil
			}
		}
	}
	f := writeYAML(t, "added-later: 127.0.0.1:9100\nadded-switch: true\n")
	if err := app.Run([]string{"tunnel", "relay", "--config", f}); err != nil {
		t.Fatal(err)
	}
}

// publish's ports list means what the port flags mean; port flags on the
// command line replace it whole, and --fleet there wins over the file's.
func TestConfigPublishPorts(t *testing.T) {
	id := func() string { k, _ := identity.Generate(); return k.ID().String() }
	a, fleet, other := id(), id(), id()
	f := writeYAML(t, `fleet: `+fleet+`
public: ["8080:80"]
ports:
  - {spec: "2222:22", mode: private, ids: [`+a+`], proxy_protocol: true}
  - {spec: "192.168.1.5:80:8081", mode: protected}
  - {spec: 9000, mode: protected, fleet: `+other+`}
`)
	c, lc, err := loadWith(t, "publish", nil, "--config", f)
	if err != nil {
		t.Fatal(err)
	}
	ports, fleetID, err := parsePorts(c, lc, lc.file)
	if err != nil {
		t.Fatal(err)
	}
	flagsC, _, err := loadWith(t, "publish", nil, "--fleet", fleet, "-public", "8080:80", "-private", "2222:22,"+a,
		"-protected", "192.168.1.5:80:8081", "-proxy-protocol", "22")
	if err != nil {
		t.Fatal(err)
	}
	flagPorts, flagFleet, err := parsePorts(flagsC, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fleetID != flagFleet || fleetID.String() != fleet {
		t.Errorf("fleet %s from the file, %s from flags", fleetID, flagFleet)
	}
	byPort := map[uint16]peer.Port{}
	for _, p := range ports {
		byPort[p.Remote] = p
	}
	for _, fp := range flagPorts {
		p := byPort[fp.Remote]
		if p.Target != fp.Target || p.Access != fp.Access || p.ProxyProtocol != fp.ProxyProtocol || len(p.Allowed) != len(fp.Allowed) {
			t.Errorf("port %d: file %+v, flags %+v", fp.Remote, p, fp)
		}
	}
	if p := byPort[9000]; p.Access != peer.Protected || p.Fleet.String() != other || len(ports) != 4 {
		t.Errorf("ports from the file: %+v, want 4 with 9000 protected for fleet %s", ports, other)
	}

	// The command line's port flags replace the file's; its --fleet wins.
	c, lc, err = loadWith(t, "publish", nil, "--config", f, "-public", "7000", "--fleet", other)
	if err != nil {
		t.Fatal(err)
	}
	ports, fleetID, err = parsePorts(c, lc, lc.file)
	if err != nil || len(ports) != 1 || ports[0].Remote != 7000 || fleetID.String() != other {
		t.Errorf("with -public 7000 --fleet: %+v, fleet %s, %v; want only port 7000 and the flag's fleet", ports, fleetID, err)
	}
	// ... and still do when the file is read again (a reload).
	file, err := readConfig(c, f)
	if err != nil {
		t.Fatal(err)
	}
	if ports, _, err = parsePorts(c, lc, file); err != nil || len(ports) != 1 || ports[0].Remote != 7000 {
		t.Errorf("reload with -public 7000: %+v, %v", ports, err)
	}
}

// Each example config loads into its command and checks as a whole: the
// examples never rot.
func TestExampleConfigs(t *testing.T) {
	for _, name := range []string{"publish", "socksd", "relay", "gateway"} {
		path := filepath.Join("..", "..", "examples", "config", name+".yaml")
		c, lc, err := loadWith(t, name, nil, "--config", path)
		if err != nil {
			t.Errorf("examples/config/%s.yaml: %v", name, err)
			continue
		}
		if len(lc.file.keys)+len(lc.file.nodes) < 3 {
			t.Errorf("examples/config/%s.yaml: %d keys, want a real example", name, len(lc.file.keys))
		}
		switch name {
		case "publish":
			ports, _, err := parsePorts(c, lc, lc.file)
			if err != nil || len(ports) != 2 {
				t.Errorf("examples/config/publish.yaml: ports %+v, %v", ports, err)
			}
		case "socksd":
			if _, err := bindSpecs(c.StringSlice("bind")); err != nil {
				t.Errorf("examples/config/socksd.yaml: bind: %v", err)
			}
		case "gateway":
			// Everything but the certificate files, which name an
			// operator's paths.
			g, err := gatewayFlags(withoutTLS(c))
			if err != nil {
				t.Errorf("examples/config/gateway.yaml: %v", err)
			} else if g.Domain != "tunnel.example.net" {
				t.Errorf("examples/config/gateway.yaml: domain %q", g.Domain)
			}
		case "relay":
			if _, err := limits(c, "max-conns", "max-conns-per-source"); err != nil {
				t.Errorf("examples/config/relay.yaml: %v", err)
			}
		}
	}
}

// withoutTLS drops --https and the certificate flags from c.
func withoutTLS(c *cli.Context) *cli.Context {
	for _, f := range []string{"https", "tls-cert", "tls-key"} {
		_ = c.Set(f, "")
	}
	return c
}

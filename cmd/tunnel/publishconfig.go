package main

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/tunnel-dev/tunnel/cmd/internal/cli"
	"github.com/tunnel-dev/tunnel/peer"
)

// publish's config file takes its ports as a list, each entry what one
// port flag says:
//
//	ports:
//	  - {spec: "2222:22", mode: private, ids: [CLIENT_ID], proxy_protocol: true}
//	  - {spec: 80, mode: public}
//	  - {spec: 2223:22, mode: protected, fleet: FLEET_ID}
//
// mode is public (the default), private (ids required) or protected
// (fleet, or the file's or command line's --fleet). Entries become the
// flags' text and go through the flags' checks (peer.Publish), so the
// file and the command line mean the same. The port flags (-public,
// -private, -protected, -proxy-protocol) given on the command line
// replace the file's ports and port keys whole.

// portEntry is one entry of ports.
type portEntry struct {
	spec, mode    string
	ids           []string
	fleet         string
	proxyProtocol bool
}

// portEntries reads the ports list.
func portEntries(n *yaml.Node) ([]portEntry, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, errors.New("want a list of {spec, mode, ids, fleet, proxy_protocol}")
	}
	var out []portEntry
	for i, item := range n.Content {
		bad := func(format string, args ...any) ([]portEntry, error) {
			return nil, fmt.Errorf("entry %d (line %d): %s", i+1, item.Line, fmt.Sprintf(format, args...))
		}
		if item.Kind != yaml.MappingNode {
			return bad("want a mapping {spec, mode, ids, fleet, proxy_protocol}")
		}
		e := portEntry{mode: "public"}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j].Value, item.Content[j+1]
			scalar := v.Kind == yaml.ScalarNode && v.Tag != "!!null"
			switch k {
			case "spec", "mode", "fleet":
				if !scalar {
					return bad("%s: want a value", k)
				}
				switch k {
				case "spec":
					e.spec = v.Value
				case "mode":
					e.mode = v.Value
				default:
					e.fleet = v.Value
				}
			case "ids":
				if v.Kind != yaml.SequenceNode {
					return bad("ids: want a list of client IDs")
				}
				for _, id := range v.Content {
					if id.Kind != yaml.ScalarNode {
						return bad("ids: want a list of client IDs")
					}
					e.ids = append(e.ids, id.Value)
				}
			case "proxy_protocol":
				b, err := strconv.ParseBool(v.Value)
				if !scalar || err != nil {
					return bad("proxy_protocol: want true or false")
				}
				e.proxyProtocol = b
			default:
				return bad("unknown key %q (want spec, mode, ids, fleet, proxy_protocol)", k)
			}
		}
		switch {
		case e.spec == "":
			return bad("no spec (e.g. spec: 2222:22)")
		case e.mode != "public" && e.mode != "private" && e.mode != "protected":
			return bad("mode %q: want public, private or protected", e.mode)
		case e.mode == "private" && len(e.ids) == 0:
			return bad("a private port needs ids: [CLIENT_ID, ...]")
		case e.mode != "private" && len(e.ids) > 0:
			return bad("ids are for private ports only")
		case e.mode != "protected" && e.fleet != "":
			return bad("fleet is for protected ports only")
		}
		out = append(out, e)
	}
	return out, nil
}

// publishFlags are the flags that say what publish publishes.
var publishFlags = []string{"public", "private", "protected", "proxy-protocol"}

// publishRequest is what publish is asked to publish: the command line's
// port flags if it has any, else the config file's; --fleet from the
// command line if given, else from the file.
func publishRequest(c *cli.Context, lc *loadedConfig, file *configFile) (peer.Publish, error) {
	multi := c.StringSlice
	req := peer.Publish{Public: multi("public"), Private: multi("private"), Protected: multi("protected"),
		ProxyProtocol: multi("proxy-protocol"), Fleet: c.String("fleet")}
	if lc == nil {
		return req, nil
	}
	if !lc.cmdline["fleet"] {
		req.Fleet = strings.Join(file.values["fleet"], "")
	}
	if slices.ContainsFunc(publishFlags, func(f string) bool { return lc.cmdline[f] }) {
		return req, nil
	}
	req.Public, req.Private = slices.Clone(file.values["public"]), slices.Clone(file.values["private"])
	req.Protected, req.ProxyProtocol = slices.Clone(file.values["protected"]), slices.Clone(file.values["proxy-protocol"])
	if n := file.nodes["ports"]; n != nil {
		entries, err := portEntries(n)
		if err != nil {
			return req, err
		}
		req.ProtectedFleets = make([]string, len(req.Protected))
		for _, e := range entries {
			switch e.mode {
			case "public":
				req.Public = append(req.Public, e.spec)
			case "private":
				req.Private = append(req.Private, e.spec+","+strings.Join(e.ids, ","))
			case "protected":
				req.Protected = append(req.Protected, e.spec)
				req.ProtectedFleets = append(req.ProtectedFleets, e.fleet)
			}
			if e.proxyProtocol {
				p, err := peer.ParsePortSpec(e.spec)
				if err != nil {
					return req, err
				}
				req.ProxyProtocol = append(req.ProxyProtocol, strconv.Itoa(int(p.Remote)))
			}
		}
	}
	return req, nil
}

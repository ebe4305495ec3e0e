package metrics

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/tunnel-dev/tunnel/peer"
	"github.com/tunnel-dev/tunnel/socks/dialer"
)

// exported is every series a process exports, with its labels: tunnel's
// own, whether or not their parts run, and the runtime's and process's.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, f := range tunnelFamilies {
		out[f.Name] = f.Labels
	}
	for _, f := range NewRegistry(nil).Gather() {
		if _, ok := out[f.Name]; !ok {
			out[f.Name] = f.Labels
		}
	}
	return out
}

var (
	seriesRE   = regexp.MustCompile(`\b((?:tunnel|go|process)_[a-z_]+)\b(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	byRE       = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	scrapeOnly = []string{"instance", "job"} // labels Prometheus adds
)

// checkExpr checks that expr uses only series we export, with their labels
// (or the scrape's), and only outcome values that exist.
func checkExpr(t *testing.T, where, expr string, series map[string][]string) {
	t.Helper()
	outcomes := []string{"aborted"}
	for _, o := range dialer.Outcomes() {
		outcomes = append(outcomes, o.String())
	}
	for _, o := range peer.Outcomes() {
		outcomes = append(outcomes, o.String())
	}
	var allowed []string
	allowed = append(allowed, scrapeOnly...)
	for _, m := range seriesRE.FindAllStringSubmatch(expr, -1) {
		labels, ok := series[m[1]]
		if !ok {
			t.Errorf("%s: %s is not a series tunnel exports", where, m[1])
			continue
		}
		allowed = append(allowed, labels...)
		for _, mm := range matcherRE.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(labels, mm[1]) && !slices.Contains(scrapeOnly, mm[1]) {
				t.Errorf("%s: %s has no label %s", where, m[1], mm[1])
			}
			if mm[1] == "outcome" && mm[2] == "=" && !slices.Contains(outcomes, mm[3]) {
				t.Errorf("%s: outcome %q is never counted", where, mm[3])
			}
		}
	}
	for _, m := range byRE.FindAllStringSubmatch(expr, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(allowed, l) {
				t.Errorf("%s: grouping by %s, which none of its series has", where, l)
			}
		}
	}
}

func TestExampleAlertRules(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	series := exported(t)
	var alerts []string
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || strings.TrimSpace(r.Expr) == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: want alert, expr and a summary", r)
			}
			alerts = append(alerts, r.Alert)
			checkExpr(t, r.Alert, r.Expr, series)
		}
	}
	// What the issue asks the rules to catch.
	for _, want := range []string{"TunnelRelayDown", "TunnelRegistryErrors", "TunnelDevicesDropping", "TunnelDenialSpike"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("alerts.yml has no %s", want)
		}
	}
}

func TestExampleDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "..", "examples", "prometheus", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	series := exported(t)
	used := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkExpr(t, "panel "+p.Title, q.Expr, series)
			for _, m := range seriesRE.FindAllStringSubmatch(q.Expr, -1) {
				used[m[1]] = true
			}
		}
	}
	// Every tunnel series has a panel.
	for name := range series {
		if strings.HasPrefix(name, "tunnel_") && !used[name] {
			t.Errorf("no panel shows %s", name)
		}
	}
}

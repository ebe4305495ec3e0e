package metrics

import (
	"bytes"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The bytes WriteText prints for what needs care: escaping, label order,
// a summary, floats Prometheus writes specially, a family without samples.
func TestWriteText(t *testing.T) {
	fams := []Family{
		{Name: "a_total", Help: `back\slash and
newline`, Type: Counter, Labels: []string{"code", "what"}, Samples: []Sample{
			{Values: []string{`q"uo\te`, "x\ny"}, Value: 3},
			{Values: []string{"200", "ok"}, Value: 1e6},
		}},
		{Name: "b", Help: "empty", Type: Gauge},
		{Name: "c_seconds", Help: "pauses", Type: Summary, Labels: []string{"quantile"}, Samples: []Sample{
			{Values: []string{"0.5"}, Value: 0.000125},
			{Suffix: "_sum", Value: math.Inf(1)},
			{Suffix: "_count", Value: 18446744073709551615},
		}},
		{Name: "d", Help: "not a number", Type: Gauge, Samples: []Sample{{Value: math.NaN()}, {Value: -1}}},
	}
	var b bytes.Buffer
	if err := WriteText(&b, fams); err != nil {
		t.Fatal(err)
	}
	want := `# HELP a_total back\\slash and\nnewline
# TYPE a_total counter
a_total{code="q\"uo\\te",what="x\ny"} 3
a_total{code="200",what="ok"} 1e+06
# HELP c_seconds pauses
# TYPE c_seconds summary
c_seconds{quantile="0.5"} 0.000125
c_seconds_sum +Inf
c_seconds_count 1.8446744073709552e+19
# HELP d not a number
# TYPE d gauge
d NaN
d -1
`
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

// parse reads text with Prometheus's own parser of the format.
func parse(t *testing.T, text []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		t.Fatalf("Prometheus's parser refuses the exposition: %v\n%s", err, text)
	}
	return fams
}

// What a process serves parses with Prometheus's own parser, family by
// family with the type and sample count Gather gave, under names and
// labels that are valid for every Prometheus (the legacy charset).
func TestRegistryParses(t *testing.T) {
	reg := NewRegistry(NewCollector())
	gathered := reg.Gather()
	var b bytes.Buffer
	if err := WriteText(&b, gathered); err != nil {
		t.Fatal(err)
	}
	parsed := parse(t, b.Bytes())
	names := map[string]bool{}
	for _, f := range gathered {
		names[f.Name] = true
		p, ok := parsed[f.Name]
		if !ok {
			t.Errorf("%s: not in the parsed exposition", f.Name)
			continue
		}
		if got := strings.ToLower(p.GetType().String()); got != f.Type {
			t.Errorf("%s: parsed as %s, written as %s", f.Name, got, f.Type)
		}
		want := len(f.Samples)
		if f.Type == Summary {
			want = 1 // one summary of quantiles, sum and count
		}
		if len(p.GetMetric()) != want {
			t.Errorf("%s: %d samples parsed, %d written", f.Name, len(p.GetMetric()), want)
		}
	}
	// Everything the dashboards in examples/prometheus read, and what
	// Prometheus's Go and process collectors export under those names.
	for _, n := range []string{"go_goroutines", "go_sched_gomaxprocs_threads", "go_gc_duration_seconds", "go_info",
		"go_memstats_heap_alloc_bytes", "go_memstats_sys_bytes", "go_threads", "process_start_time_seconds"} {
		if !names[n] {
			t.Errorf("no %s", n)
		}
	}
	if v := parsed["go_goroutines"].GetMetric()[0].GetGauge().GetValue(); v < 1 {
		t.Errorf("go_goroutines %v", v)
	}
	if v := parsed["go_memstats_sys_bytes"].GetMetric()[0].GetGauge().GetValue(); v < 1<<20 {
		t.Errorf("go_memstats_sys_bytes %v, want the runtime's MiBs", v)
	}
	if v := parsed["go_info"].GetMetric()[0].GetLabel()[0].GetValue(); !regexp.MustCompile(`^go1\.|^devel`).MatchString(v) {
		t.Errorf("go_info version %q", v)
	}
}

// Every runtime/metrics name read exists in this Go: a rename in a Go
// release fails here instead of reading zeros.
func TestRuntimeNamesExist(t *testing.T) {
	known := map[string]bool{}
	for _, d := range rtmetricsAll() {
		known[d] = true
	}
	for i, n := range runtimeNames {
		if n == "" {
			t.Errorf("runtimeNames[%d] unset", i)
		} else if !known[n] {
			t.Errorf("%s: not a runtime/metrics name of this Go", n)
		}
	}
}

// One scrape at a time: while one is answered, another gets 503 at once.
func TestScrapeOneAtATime(t *testing.T) {
	s := newScraper(NewRegistry(nil))
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != ContentType {
		t.Fatalf("scrape: %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	parse(t, rec.Body.Bytes())
	s.busy <- struct{}{} // a scrape under way
	rec = httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("second scrape at once: %d, want 503", rec.Code)
	}
	<-s.busy
}

// Gather's order: samples by label values, a summary's _sum then _count.
func TestSortSamples(t *testing.T) {
	f := Family{Labels: []string{"quantile"}, Samples: []Sample{
		{Suffix: "_count", Value: 5}, {Values: []string{"1"}}, {Suffix: "_sum", Value: 4}, {Values: []string{"0.5"}},
	}}
	f.sortSamples()
	var got []string
	for _, s := range f.Samples {
		got = append(got, s.Suffix+strings.Join(s.Values, ","))
	}
	if strings.Join(got, " ") != "0.5 1 _sum _count" {
		t.Fatalf("order %v", got)
	}
}

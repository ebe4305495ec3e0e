package metrics

import (
	"io"
	"slices"
	"strconv"
)

// The Prometheus text exposition format, version 0.0.4, as this package
// writes it (what every Prometheus server and agent scrapes):
//
//	# HELP <name> <help, with \ and newline escaped as \\ and \n>
//	# TYPE <name> counter|gauge|summary
//	<name>[<suffix>][{<label>="<value>",…}] <float>
//
// One HELP and one TYPE line per family, then all of its samples, one per
// line; a family appears once. Label values escape \, " and newline. A
// summary's samples are <name>{quantile="q"}, <name>_sum and
// <name>_count. Floats are Go's shortest 'g' form (1, 772432,
// 1.444405e+06, NaN, +Inf). Families are written sorted by name, samples
// by their label values, label names in the order the family declares
// them (alphabetical here, as Prometheus's own client prints them), so
// that one state always prints the same bytes.

// ContentType is the HTTP Content-Type of WriteText's output.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// The family types this package writes.
const (
	Counter = "counter"
	Gauge   = "gauge"
	Summary = "summary"
)

// A Family is one metric name with its description, type, label names and
// samples.
type Family struct {
	Name, Help, Type string
	Labels           []string // label names; every sample with labels has one value per name
	Samples          []Sample
}

// A Sample is one line of a family: Values are its label values (none for
// a series without labels, and for a summary's _sum and _count), Suffix
// is "" or, in a summary, "_sum" or "_count".
type Sample struct {
	Suffix string
	Values []string
	Value  float64
}

// add appends a sample with the given label values.
func (f *Family) add(v float64, values ...string) {
	f.Samples = append(f.Samples, Sample{Values: values, Value: v})
}

// sortSamples orders f's samples by label values, a summary's _sum and
// _count last, in that order (as Prometheus prints them).
func (f *Family) sortSamples() {
	rank := func(s Sample) int {
		switch s.Suffix {
		case "_sum":
			return 1
		case "_count":
			return 2
		}
		return 0
	}
	slices.SortStableFunc(f.Samples, func(a, b Sample) int {
		if c := rank(a) - rank(b); c != 0 {
			return c
		}
		return slices.Compare(a.Values, b.Values)
	})
}

// WriteText writes fams to w in the text format above, in the order given
// (Registry.Gather sorts them); families without samples are left out.
func WriteText(w io.Writer, fams []Family) error {
	b := make([]byte, 0, 16<<10)
	for _, f := range fams {
		if len(f.Samples) == 0 {
			continue
		}
		b = append(b, "# HELP "...)
		b = append(b, f.Name...)
		b = append(b, ' ')
		b = appendEscaped(b, f.Help, false)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.Name...)
		b = append(b, ' ')
		b = append(b, f.Type...)
		b = append(b, '\n')
		for _, s := range f.Samples {
			b = append(b, f.Name...)
			b = append(b, s.Suffix...)
			if len(s.Values) > 0 {
				b = append(b, '{')
				for i, v := range s.Values {
					if i > 0 {
						b = append(b, ',')
					}
					b = append(b, f.Labels[i]...)
					b = append(b, `="`...)
					b = appendEscaped(b, v, true)
					b = append(b, '"')
				}
				b = append(b, '}')
			}
			b = append(b, ' ')
			b = strconv.AppendFloat(b, s.Value, 'g', -1, 64)
			b = append(b, '\n')
		}
	}
	_, err := w.Write(b)
	return err
}

// appendEscaped appends s with \ and newline escaped, and " too in a
// label value.
func appendEscaped(b []byte, s string, quote bool) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, `\\`...)
		case c == '\n':
			b = append(b, `\n`...)
		case c == '"' && quote:
			b = append(b, `\"`...)
		default:
			b = append(b, c)
		}
	}
	return b
}

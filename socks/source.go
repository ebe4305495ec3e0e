package socks

import (
	"strings"
	"time"
)

// How refusals of a client not yet authorized are logged; what it may
// hold is counted per limit.SourceOf.
const (
	// refusalReportEvery is how often a refused source (or local user)
	// gets a log line: the first refusal, then one per interval with the
	// number not logged.
	refusalReportEvery = 10 * time.Second
	// refusalReportKeys bounds the sources a Reporter tracks.
	refusalReportKeys = 4096
)

// trunc cuts what a stranger sent to n bytes for a log line.
func trunc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

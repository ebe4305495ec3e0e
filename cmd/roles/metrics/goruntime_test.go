package metrics

import rtmetrics "runtime/metrics"

// rtmetricsAll is the names of every runtime/metrics value this Go has.
func rtmetricsAll() []string {
	var names []string
	for _, d := range rtmetrics.All() {
		names = append(names, d.Name)
	}
	return names
}

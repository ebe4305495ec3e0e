package dialer

import "sync/atomic"

// Stats counts the streams a Dialer opened to devices, for metrics read at
// scrape time. Each stream is counted once, when its outcome is known: a
// dial that fails when it returns (by Classify's Outcome), an opened
// stream when it ends (OK when closed, Aborted when broken off). Fallback
// dials to other hosts are not counted.
type Stats struct {
	Outcomes [numOutcomes]atomic.Uint64
	Aborted  atomic.Uint64
	// Sent and Received are the bytes written to and read from streams.
	Sent, Received atomic.Uint64
}

// numOutcomes is one past the last Outcome.
const numOutcomes = TooOld + 1

func (s *Stats) count(o Outcome) {
	if o < numOutcomes {
		s.Outcomes[o].Add(1)
	}
}

// Outcomes lists every Outcome, in order.
func Outcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

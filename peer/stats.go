package peer

import "sync/atomic"

// Stats counts the agent's streams by how they ended and the bytes its
// spliced streams carried, for metrics read at scrape time. Each stream
// is counted once, when its outcome is known: a refusal when it is sent,
// a spliced stream when the splice ends (OutcomeOK, or OutcomeAborted if
// either side broke off). Pings are not counted.
type Stats struct {
	Streams [numOutcomes]atomic.Uint64
	// FromClients are the bytes clients sent to local services,
	// ToClients those sent back.
	FromClients, ToClients atomic.Uint64
}

// Outcome is how a stream on the device ended.
type Outcome uint8

// Outcomes of the device's streams.
const (
	OutcomeOK           Outcome = iota // spliced, and both directions ended cleanly
	OutcomeDenied                      // the port's access mode refused the client
	OutcomeNotPublished                // no such port
	OutcomeRefused                     // the local service refused the connection
	OutcomeTimeout                     // the local service did not answer in time
	OutcomeAborted                     // spliced, then broken off by either side
	OutcomeNotSSH                      // host keys asked of a port with no SSH service
	OutcomeBadRequest                  // the header did not parse
	OutcomeClientGone                  // the client left before the answer
	OutcomeRevoked                     // spliced, then closed by a reload that no longer allows it
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "denied", "not_published", "refused", "timeout", "aborted", "not_ssh",
	"bad_request", "client_gone", "revoked"}

// String names the outcome for metric labels.
func (o Outcome) String() string {
	if o < numOutcomes {
		return outcomeNames[o]
	}
	return "bad_request"
}

// Outcomes lists every outcome, in order.
func Outcomes() []Outcome {
	out := make([]Outcome, numOutcomes)
	for i := range out {
		out[i] = Outcome(i)
	}
	return out
}

func (s *Stats) count(o Outcome) { s.Streams[o].Add(1) }

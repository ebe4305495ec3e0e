package dialer

import "time"

// TimeJumped is what the node's time-jump monitor calls, for tests that
// cannot stop a process.
func (d *Dialer) TimeJumped(late time.Duration) { d.timeJumped(late) }

package registry

import "time"

// Every timing of the package, in one place.
const (
	// PresenceTTL is how long a Redis presence key outlives its last
	// refresh.
	PresenceTTL = 30 * time.Second
	// RefreshInterval is how often a node refreshes its Redis keys.
	RefreshInterval = 10 * time.Second
	// livenessProbe is how often a node checks that its liveness key is
	// still in Redis (a Redis that restarted empty gets it back within
	// one probe).
	livenessProbe = time.Second
	// failFast is how long after a Redis failure Set and Get do not ask
	// Redis again (a blackholed Redis would make every lookup wait).
	failFast = time.Second
	// redisTimeout bounds one Redis operation.
	redisTimeout = 2 * time.Second
	// removeTimeout bounds removing a device's record when it leaves.
	removeTimeout = 5 * time.Second
)

package registry

import (
	"time"

	"github.com/tunnel-dev/tunnel/transport"
)

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

	// DefaultLeaseTTL is how long a lease lasts (transport/lease.go);
	// nodes register again when half of it has passed.
	DefaultLeaseTTL = time.Hour
	// leaseIdle is how long a leased registration lasts without a keep:
	// as long as an outer connection lasts without a packet.
	leaseIdle = transport.RelayIdleTimeout
	// leaseSweep is how often registrations are checked for it.
	leaseSweep = 5 * time.Second
	// recordQueue bounds the device records waiting to be written or
	// removed for keeps: registrations a keep made again (a relay that
	// restarted) and releases. A keep that finds the queue full is not
	// answered, and the next one tries again.
	recordQueue = 1024
)

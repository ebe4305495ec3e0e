package gateway

import "testing"

// Helpers of this package's tests, for the tests of package gateway_test,
// which run the gateway as the product starts it (cmd/roles imports this
// package, so they cannot live in it).

const (
	TestDomain = testDomain
	IOTimeout  = ioTimeout
)

var (
	SSHLike = sshLike
	Get     = get
	WaitFor = waitFor
)

// StartBackend starts the test web server devices publish and returns its
// address.
func StartBackend(t *testing.T) string { return startBackend(t).Listener.Addr().String() }

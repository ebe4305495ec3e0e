package dialer

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

// ErrNotTunnel is returned for hosts that are not .tunnel names when
// falling back to ordinary dialing is off: a tunnel front door is never an
// open proxy.
var ErrNotTunnel = errors.New("only .tunnel hosts are served here")

// Outcome is how opening a stream ended: the one classification that SOCKS
// reply codes (socks.ReplyCode), the gateway's HTTP statuses and `tunnel
// connect`'s messages are all mapped from.
type Outcome uint8

// Outcomes, from Classify.
const (
	OK Outcome = iota
	// NotTunnel: a host that is not a .tunnel name, with no fallback.
	NotTunnel
	// MalformedName: a .tunnel name whose device label is not an ID.
	MalformedName
	// Offline: no device with that ID is online.
	Offline
	// RegistryUnavailable: no rendezvous node could be asked.
	RegistryUnavailable
	// NoDirectPath: in direct path mode, no direct path answered.
	NoDirectPath
	// Denied: the device's access policy refused this client (or a
	// gateway's budget did).
	Denied
	// NotPublished: the device publishes nothing on that port.
	NotPublished
	// Refused: the device's local service, or a fallback host, refused.
	Refused
	// Timeout: the device, its service or a fallback host did not answer
	// in time.
	Timeout
	// NetworkUnreachable and HostUnreachable: a fallback host could not
	// be reached.
	NetworkUnreachable
	HostUnreachable
	// Failed: anything else.
	Failed
	// Outcomes of a query (Dialer.HostKeys, Dialer.Ping), never of a
	// dial: after Failed, so that what maps dial outcomes (SOCKS replies)
	// does not list them.
	//
	// NotSSH: asked for host keys, the device found no SSH service
	// behind the port.
	NotSSH
	// TooOld: the device runs a tunnel too old to answer the query.
	TooOld
)

// String names the outcome for logs and metric labels.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o].name
	}
	return "failed"
}

// Explain says what the outcome means, for a person.
func (o Outcome) Explain() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o].explain
	}
	return "failed"
}

var outcomeNames = [...]struct{ name, explain string }{
	OK:                  {"ok", "connected"},
	NotTunnel:           {"not_tunnel", "not a .tunnel host"},
	MalformedName:       {"malformed_name", "malformed .tunnel name"},
	Offline:             {"offline", "unknown or offline device"},
	RegistryUnavailable: {"registry_unavailable", "rendezvous node unreachable"},
	NoDirectPath:        {"no_direct_path", "no direct path to the device"},
	Denied:              {"denied", "access denied"},
	NotPublished:        {"not_published", "port not published by the device"},
	Refused:             {"refused", "the service refused the connection"},
	Timeout:             {"timeout", "timed out"},
	NetworkUnreachable:  {"network_unreachable", "network unreachable"},
	HostUnreachable:     {"host_unreachable", "host unreachable"},
	Failed:              {"failed", "failed"},
	NotSSH:              {"not_ssh", "the service behind the port does not speak SSH"},
	TooOld:              {"too_old", "the device runs an older tunnel that cannot answer this"},
}

// Classify maps the error of a dial to its Outcome. Errors may be wrapped.
// The project's own outcomes are checked first, so that an error carrying
// both one of them and a lower level cause (a timeout, say) is classified
// by what the project decided.
func Classify(err error) Outcome {
	switch {
	case err == nil:
		return OK
	case errors.Is(err, stream.ErrDenied):
		return Denied
	case errors.Is(err, ErrNotTunnel):
		return NotTunnel
	case errors.Is(err, resolver.ErrMalformedName):
		return MalformedName
	case errors.Is(err, resolver.ErrOffline):
		return Offline
	case errors.Is(err, resolver.ErrRegistryUnavailable):
		return RegistryUnavailable
	case errors.Is(err, transport.ErrNoDirectPath):
		return NoDirectPath
	case errors.Is(err, stream.ErrPortNotPublished):
		return NotPublished
	case errors.Is(err, stream.ErrRefused):
		return Refused
	case errors.Is(err, stream.ErrNotSSH):
		return NotSSH
	case errors.Is(err, stream.ErrDeviceTooOld):
		return TooOld
	case errors.Is(err, stream.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded):
		// Before the errno and DNS cases: when our own dial deadline cut a
		// lookup short, the answer is "timed out", not "no such host".
		return Timeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return Refused
	case errors.Is(err, syscall.ENETUNREACH):
		return NetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return HostUnreachable
	}
	// A name that could not be resolved is an unreachable host even when
	// the DNS server was the one that timed out.
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return HostUnreachable
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return Timeout
	}
	return Failed
}

package dialer_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/socks/dialer"
	"github.com/tunnel-dev/tunnel/transport"
	"github.com/tunnel-dev/tunnel/transport/stream"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want dialer.Outcome
	}{
		{nil, dialer.OK},
		{fmt.Errorf("open stream: %w: not listed", stream.ErrDenied), dialer.Denied},
		{dialer.ErrNotTunnel, dialer.NotTunnel},
		{resolver.ErrMalformedName, dialer.MalformedName},
		{fmt.Errorf("look up x: %w", resolver.ErrOffline), dialer.Offline},
		{resolver.ErrRegistryUnavailable, dialer.RegistryUnavailable},
		{transport.ErrNoDirectPath, dialer.NoDirectPath},
		{stream.ErrPortNotPublished, dialer.NotPublished},
		{stream.ErrRefused, dialer.Refused},
		{stream.ErrTimeout, dialer.Timeout},
		{context.DeadlineExceeded, dialer.Timeout},
		{os.ErrDeadlineExceeded, dialer.Timeout},
		// The project's verdict wins over a lower-level cause it wraps.
		{fmt.Errorf("%w: %w", resolver.ErrRegistryUnavailable, context.DeadlineExceeded), dialer.RegistryUnavailable},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, dialer.Refused},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, dialer.NetworkUnreachable},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, dialer.HostUnreachable},
		{&net.DNSError{Err: "no such host", IsNotFound: true}, dialer.HostUnreachable},
		{fmt.Errorf("host keys: %w: local service: no SSH key exchange", stream.ErrNotSSH), dialer.NotSSH},
		{fmt.Errorf("ping of x: %w", stream.ErrDeviceTooOld), dialer.TooOld},
		{transport.ErrPeerMismatch, dialer.Failed},
		{errors.New("something else"), dialer.Failed},
	} {
		if got := dialer.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	names := map[string]bool{}
	for o := dialer.OK; o <= dialer.TooOld; o++ {
		if o.String() == "" || o.Explain() == "" || names[o.String()] {
			t.Errorf("outcome %d: name %q, explanation %q (names must be distinct)", o, o.String(), o.Explain())
		}
		names[o.String()] = true
	}
}

package socks

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"

	"github.com/tunnel-dev/tunnel/resolver"
	"github.com/tunnel-dev/tunnel/transport"
)

// Reply codes (RFC 1928 §6).
const (
	ReplySucceeded           byte = 0x00
	ReplyGeneralFailure      byte = 0x01
	ReplyNotAllowed          byte = 0x02 // connection not allowed by ruleset
	ReplyNetworkUnreachable  byte = 0x03
	ReplyHostUnreachable     byte = 0x04
	ReplyConnectionRefused   byte = 0x05
	ReplyTTLExpired          byte = 0x06 // what clients show for a timeout
	ReplyCommandNotSupported byte = 0x07
	ReplyAddressNotSupported byte = 0x08
)

// ErrNotTunnel is returned by dialers for hosts that are not .tunnel names
// when falling back to ordinary dialing is off. It maps to ReplyNotAllowed,
// which clients show as a policy refusal rather than a network fault.
var ErrNotTunnel = errors.New("only .tunnel hosts are served here")

// ReplyCode maps the error of a dial, or of parsing the request, to the code
// the client is sent. Errors may be wrapped. The project's own outcomes are
// checked first, so that an error carrying both one of them and a lower
// level cause (a timeout, say) is reported by what the project decided.
func ReplyCode(err error) byte {
	switch {
	case err == nil:
		return ReplySucceeded
	case errors.Is(err, ErrCommandNotSupported):
		return ReplyCommandNotSupported
	case errors.Is(err, ErrAddressNotSupported):
		return ReplyAddressNotSupported
	case errors.Is(err, transport.ErrDenied), errors.Is(err, ErrNotTunnel):
		return ReplyNotAllowed
	case errors.Is(err, resolver.ErrMalformedName),
		errors.Is(err, resolver.ErrOffline),
		errors.Is(err, resolver.ErrRegistryUnavailable),
		errors.Is(err, ErrNoDirectPath):
		return ReplyHostUnreachable
	case errors.Is(err, transport.ErrPortNotPublished),
		errors.Is(err, transport.ErrRefused):
		return ReplyConnectionRefused
	case errors.Is(err, transport.ErrTimeout),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded):
		// Before the errno and DNS cases: when our own dial deadline cut a
		// lookup short, the answer is "timed out", not "no such host".
		return ReplyTTLExpired
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReplyConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return ReplyNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return ReplyHostUnreachable
	}
	// A name that could not be resolved is an unreachable host even when
	// the DNS server was the one that timed out.
	if _, ok := errors.AsType[*net.DNSError](err); ok {
		return ReplyHostUnreachable
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return ReplyTTLExpired
	}
	return ReplyGeneralFailure
}

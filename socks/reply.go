package socks

import (
	"errors"

	"github.com/tunnel-dev/tunnel/socks/dialer"
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

// ReplyCode maps the error of a dial, or of parsing the request, to the
// code the client is sent: the request's own faults first, then the dial's
// Outcome (dialer.Classify). Errors may be wrapped.
func ReplyCode(err error) byte {
	switch {
	case errors.Is(err, ErrCommandNotSupported):
		return ReplyCommandNotSupported
	case errors.Is(err, ErrAddressNotSupported):
		return ReplyAddressNotSupported
	}
	return OutcomeReply(dialer.Classify(err))
}

// OutcomeReply is the reply code for an outcome.
func OutcomeReply(o dialer.Outcome) byte {
	switch o {
	case dialer.OK:
		return ReplySucceeded
	case dialer.Denied, dialer.NotTunnel:
		return ReplyNotAllowed
	case dialer.MalformedName, dialer.Offline, dialer.RegistryUnavailable, dialer.NoDirectPath, dialer.HostUnreachable:
		return ReplyHostUnreachable
	case dialer.NotPublished, dialer.Refused:
		return ReplyConnectionRefused
	case dialer.Timeout:
		// What clients show for a timeout.
		return ReplyTTLExpired
	case dialer.NetworkUnreachable:
		return ReplyNetworkUnreachable
	}
	return ReplyGeneralFailure
}

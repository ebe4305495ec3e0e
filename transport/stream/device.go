package stream

import (
	"errors"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// Incoming is the device half of one stream, between the client's Header
// and the device's final answer: the device reads what was asked (Header),
// decides, and ends with exactly one of Refuse or Accept.
type Incoming struct {
	str *quic.Stream
	// Header is what the client asked.
	Header Header
}

// Accept reads the client's Header from a stream the device accepted,
// waiting at most timeout (HeaderTimeout if zero). A malformed Header is
// answered StatusBadRequest here, and the error wraps ErrMalformedHeader;
// a client that reset the stream gets nothing, and the error wraps
// ErrClientGone.
func Accept(str *quic.Stream, timeout time.Duration) (*Incoming, error) {
	if timeout <= 0 {
		timeout = HeaderTimeout
	}
	_ = str.SetReadDeadline(time.Now().Add(timeout))
	in := &Incoming{str: str}
	o, err := ReadHeader(str)
	if err != nil {
		if se, ok := errors.AsType[*quic.StreamError](err); ok && se.Remote {
			// The client gave up before asking for anything.
			return nil, clientGone{err}
		}
		in.Refuse(StatusBadRequest, "malformed stream header")
		return nil, err
	}
	in.Header = o
	return in, nil
}

// Challenge asks the client for its credential of fleet (a protected
// port whose Header carried none) and returns it; nil means the client holds
// none. If the challenge cannot be written the error wraps ErrClientGone; a
// client that does not answer with a Credential within the Header's
// deadline is refused here, and the error wraps ErrMalformedHeader.
func (in *Incoming) Challenge(fleet identity.ID) ([]byte, error) {
	if _, err := in.str.Write(AppendStatus(nil, StatusCredentialRequired, fleet.String())); err != nil {
		in.str.CancelRead(transport.StreamAborted)
		return nil, clientGone{err}
	}
	cred, err := ReadCredential(in.str)
	if err != nil {
		in.Refuse(StatusBadRequest, "no credential")
		return nil, err
	}
	return cred, nil
}

// Refuse answers with a final failure status (reason goes to the client's
// log) and ends the stream.
func (in *Incoming) Refuse(code StatusCode, reason string) {
	_ = in.str.SetWriteDeadline(time.Now().Add(refuseTimeout))
	_, _ = in.str.Write(AppendStatus(nil, code, reason))
	in.str.CancelRead(transport.StreamAborted)
	in.str.Close()
}

// Accept answers StatusOK: from here the stream carries the client's
// bytes, with no deadline. If the answer cannot be written (the client
// reset the stream and said so already) the stream is reset, and the error
// wraps ErrClientGone; a reset that arrives later shows on the first read.
func (in *Incoming) Accept() (transport.HalfConn, error) {
	_ = in.str.SetReadDeadline(time.Time{})
	if _, err := in.str.Write(AppendStatus(nil, StatusOK, "")); err != nil {
		in.str.CancelRead(transport.StreamAborted)
		in.str.CancelWrite(transport.StreamAborted)
		return nil, clientGone{err}
	}
	return transport.Stream(in.str), nil
}

// Reply answers StatusOK followed by body (a KindHostKeys reply, or
// nothing for KindPing) and ends the stream: these kinds carry no payload.
// A client that is gone makes it fail with an error wrapping
// ErrClientGone; it never blocks past refuseTimeout.
func (in *Incoming) Reply(body []byte) error {
	_ = in.str.SetWriteDeadline(time.Now().Add(refuseTimeout))
	_, err := in.str.Write(append(AppendStatus(nil, StatusOK, ""), body...))
	in.str.CancelRead(transport.StreamAborted)
	if err != nil {
		in.str.CancelWrite(transport.StreamAborted)
		return clientGone{err}
	}
	in.str.Close()
	return nil
}

// clientGone is an error that means the client is gone: it reads as the
// error that showed it, and is an ErrClientGone.
type clientGone struct{ err error }

func (e clientGone) Error() string   { return e.err.Error() }
func (e clientGone) Unwrap() []error { return []error{ErrClientGone, e.err} }

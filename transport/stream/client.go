package stream

import (
	"context"
	"fmt"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// Request is what a client asks of a device on one stream.
type Request struct {
	Port uint16
	// Fleet is the fleet known to guard Port, from an earlier challenge
	// (Open returns it); its credential goes in the Header and saves a
	// round trip. Zero: none known.
	Fleet identity.ID
	// Credential returns this node's membership credential for a fleet,
	// in wire form, or nil if it holds none. Nil: never any (a public
	// gateway must present none).
	Credential func(fleet identity.ID) []byte
}

func (r Request) credential(fleet identity.ID) []byte {
	if r.Credential == nil || fleet.IsZero() {
		return nil
	}
	return r.Credential(fleet)
}

// Open is the client half: it opens a stream on conn, sends req, answers
// a credential challenge if the device makes one, and waits (at most
// AnswerTimeout) for the device's final answer. On success the stream is
// ready for payload. guard is the fleet that guards the port when the
// device challenged, for the next Request; zero otherwise. Errors wrap
// ErrPortNotPublished, ErrDenied, ErrRefused, ErrTimeout or ErrBadRequest
// as the device answered, or ctx's error; the stream is reset on any.
func Open(ctx context.Context, conn *quic.Conn, req Request) (s transport.HalfConn, guard identity.ID, err error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, guard, err
	}
	abort := func() { str.CancelRead(transport.StreamAborted); str.CancelWrite(transport.StreamAborted) }
	stop := context.AfterFunc(ctx, abort)
	guard, err = open(str, req)
	if !stop() {
		// ctx ended and the stream is being reset, whatever open saw.
		abort()
		return nil, guard, ctx.Err()
	}
	if err != nil {
		abort()
		return nil, guard, err
	}
	return transport.Stream(str), guard, nil
}

func open(str *quic.Stream, req Request) (guard identity.ID, err error) {
	hdr, err := AppendHeader(nil, Header{Port: req.Port, Credential: req.credential(req.Fleet)})
	if err != nil {
		return guard, err
	}
	if _, err := str.Write(hdr); err != nil {
		return guard, err
	}
	_ = str.SetReadDeadline(time.Now().Add(AnswerTimeout))
	code, msg, err := ReadStatus(str)
	if err == nil && code == StatusCredentialRequired {
		if guard, err = identity.ParseID(msg); err != nil {
			return guard, fmt.Errorf("device asked for a credential of fleet %q: %w", msg, err)
		}
		cred := req.credential(guard)
		b, err := AppendCredential(nil, cred)
		if err != nil {
			return guard, err
		}
		if _, err := str.Write(b); err != nil {
			return guard, err
		}
		code, msg, err = ReadStatus(str)
		if err == nil && len(cred) == 0 && code == StatusDenied {
			msg += fmt.Sprintf(" (this node holds no credential of fleet %s)", guard.Short())
		}
	}
	if err != nil {
		return guard, err
	}
	if err := StatusError(code, msg); err != nil {
		return guard, err
	}
	_ = str.SetReadDeadline(time.Time{})
	return guard, nil
}

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
	// Kind is what is asked; Open is for KindConnect, HostKeys and Ping
	// set it themselves.
	Kind Kind
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
	str, guard, err := ask(ctx, conn, req, nil)
	if err != nil {
		return nil, guard, err
	}
	return transport.Stream(str), guard, nil
}

// HostKeys asks the device for the SSH host keys of the service behind
// port, as Open would connect to it (req.Kind is ignored), and returns
// them in SSH wire format. Beyond Open's errors, it returns errors
// wrapping ErrNotSSH, ErrDeviceTooOld or ErrMalformedHostKeys.
func HostKeys(ctx context.Context, conn *quic.Conn, req Request) (keys [][]byte, guard identity.ID, err error) {
	req.Kind = KindHostKeys
	str, guard, err := ask(ctx, conn, req, func(str *quic.Stream) error {
		var err error
		keys, err = ReadHostKeys(str)
		return err
	})
	if err != nil {
		return nil, guard, err
	}
	str.CancelRead(transport.StreamAborted)
	str.Close()
	return keys, guard, nil
}

// Ping asks the device for an answer, and returns once it has it: the
// round trip of one stream on conn. Errors wrap ErrDeviceTooOld, or are
// ctx's or the connection's.
func Ping(ctx context.Context, conn *quic.Conn) error {
	str, _, err := ask(ctx, conn, Request{Kind: KindPing}, nil)
	if err != nil {
		return err
	}
	str.CancelRead(transport.StreamAborted)
	str.Close()
	return nil
}

// ask opens a stream, sends req and reads the device's final answer and,
// after StatusOK, what reply reads (nil: nothing), within ctx and
// AnswerTimeout. The stream is reset on any error.
func ask(ctx context.Context, conn *quic.Conn, req Request, reply func(*quic.Stream) error) (*quic.Stream, identity.ID, error) {
	str, err := conn.OpenStreamSync(ctx)
	if err != nil {
		return nil, identity.ID{}, err
	}
	abort := func() { str.CancelRead(transport.StreamAborted); str.CancelWrite(transport.StreamAborted) }
	stop := context.AfterFunc(ctx, abort)
	guard, err := open(str, req)
	if err == nil && reply != nil {
		err = reply(str)
	}
	if !stop() {
		// ctx ended and the stream is being reset, whatever open saw.
		abort()
		return nil, guard, ctx.Err()
	}
	if err != nil {
		abort()
		return nil, guard, err
	}
	_ = str.SetReadDeadline(time.Time{})
	return str, guard, nil
}

func open(str *quic.Stream, req Request) (guard identity.ID, err error) {
	hdr, err := AppendHeader(nil, Header{Kind: req.Kind, Port: req.Port, Credential: req.credential(req.Fleet)})
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
	if code == StatusBadRequest && req.Kind != KindConnect {
		// Every device that knows version 2 parses what this client
		// wrote; one that does not is older.
		return guard, fmt.Errorf("%w (%v: %s)", ErrDeviceTooOld, req.Kind, msg)
	}
	return guard, StatusError(code, msg)
}

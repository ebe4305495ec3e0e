package stream

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/transport"
)

// These tests run both halves of the stream protocol — the client's Open
// and the device's Accept/Incoming — over a real end-to-end QUIC connection
// between two nodes on loopback that reach each other through a real relay.

// wait bounds every step that should finish quickly, so that a broken half
// fails the test instead of hanging it.
const wait = 5 * time.Second

// link is a client's end-to-end connection to a device, and the streams the
// device accepted on it, in the order the client opened them.
type link struct {
	conn    *quic.Conn        // the client's end
	streams chan *quic.Stream // streams the device accepted
}

// newLink starts a relay and two nodes attached to it, dials the device
// from the client, and hands every stream the device accepts to the test.
// Everything stops when the test ends.
func newLink(t *testing.T) *link {
	t.Helper()
	relay, err := transport.ListenRelay("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	relayAddr := relay.Socket().LocalAddr()
	node := func() *transport.Node {
		k, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		nd, err := transport.NewNode(k, "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nd.Close() })
		nd.SetRoutes(transport.RelayRoute{Addr: relayAddr}, nil)
		t.Cleanup(relay.Attach(nd.Endpoint(), nd.LocalAddr()))
		return nd
	}
	dev, cli := node(), node()

	ln, err := dev.ListenPeers()
	if err != nil {
		t.Fatal(err)
	}
	l := &link{streams: make(chan *quic.Stream)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept(ctx)
		if err != nil {
			return
		}
		defer c.CloseWithError(0, "")
		for {
			s, err := c.AcceptStream(ctx)
			if err != nil {
				return
			}
			select {
			case l.streams <- s:
			case <-ctx.Done():
				s.CancelRead(transport.StreamAborted)
				s.CancelWrite(transport.StreamAborted)
				return
			}
		}
	}()

	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer dcancel()
	l.conn, err = cli.DialPeer(dctx, dev.Key().ID(), dev.Endpoint())
	if err != nil {
		t.Fatalf("client could not reach the device through the relay: %v", err)
	}
	t.Cleanup(func() { l.conn.CloseWithError(0, "") })
	return l
}

// next returns the next stream the device accepted.
func (l *link) next(t *testing.T) *quic.Stream {
	t.Helper()
	select {
	case s := <-l.streams:
		return s
	case <-time.After(wait):
		t.Fatal("the device accepted no stream")
		return nil
	}
}

// raw opens a stream on the client's end without speaking the protocol;
// it is reset when the test ends.
func (l *link) raw(t *testing.T) *quic.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := l.conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatalf("open a raw stream: %v", err)
	}
	t.Cleanup(func() { abortStream(s) })
	return s
}

func abortStream(s *quic.Stream) {
	s.CancelRead(transport.StreamAborted)
	s.CancelWrite(transport.StreamAborted)
}

// opened is what a client's Open returned.
type opened struct {
	s     transport.HalfConn
	guard identity.ID
	err   error
}

// open runs Open in the background: the test plays the device meanwhile.
func (l *link) open(ctx context.Context, req Request) <-chan opened {
	ch := make(chan opened, 1)
	go func() {
		s, guard, err := Open(ctx, l.conn, req)
		ch <- opened{s, guard, err}
	}()
	return ch
}

// result waits for Open to return.
func result(t *testing.T, ch <-chan opened) opened {
	t.Helper()
	select {
	case r := <-ch:
		if r.err == nil {
			t.Cleanup(func() { r.s.Abort() })
		}
		return r
	case <-time.After(wait):
		t.Fatal("the client's Open did not return")
		return opened{}
	}
}

// accept is the device's Accept of the next stream, which must succeed.
func (l *link) accept(t *testing.T) *Incoming {
	t.Helper()
	str := l.next(t)
	in, err := Accept(str, wait)
	if err != nil {
		abortStream(str)
		t.Fatalf("device Accept: %v", err)
	}
	t.Cleanup(func() { abortStream(in.str) })
	return in
}

// newFleet returns a fresh fleet ID.
func newFleet(t *testing.T) identity.ID {
	t.Helper()
	k, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k.ID()
}

// watchdog aborts conns if the test is still running after wait, so that a
// stuck read or write fails instead of hanging; stop it when done.
func watchdog(conns ...transport.HalfConn) (stop func() bool) {
	return time.AfterFunc(wait, func() {
		for _, c := range conns {
			c.Abort()
		}
	}).Stop
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange checks that cli and dev carry bytes both ways with half-close:
// the client sends up and ends its side, the device reads it all to EOF,
// then answers with down and ends its side, and the client, whose write
// side is already closed, still reads it all.
func exchange(t *testing.T, cli, dev transport.HalfConn, up, down []byte) {
	t.Helper()
	defer watchdog(cli, dev)()
	wrote := make(chan error, 1)
	go func() {
		_, err := cli.Write(up)
		if err == nil {
			err = cli.CloseWrite()
		}
		wrote <- err
	}()
	got, err := io.ReadAll(dev)
	if err != nil {
		t.Fatalf("device reading the client's bytes to EOF: %v (after %d of %d bytes)", err, len(got), len(up))
	}
	if !bytes.Equal(got, up) {
		t.Fatalf("device read %d bytes that differ from the %d the client sent", len(got), len(up))
	}
	if err := <-wrote; err != nil {
		t.Fatalf("client write and CloseWrite: %v", err)
	}
	if _, err := dev.Write(down); err != nil {
		t.Fatalf("device writing after the client's half-close: %v", err)
	}
	if err := dev.CloseWrite(); err != nil {
		t.Fatalf("device CloseWrite: %v", err)
	}
	got, err = io.ReadAll(cli)
	if err != nil {
		t.Fatalf("client reading the device's answer after its own half-close: %v (after %d of %d bytes)", err, len(got), len(down))
	}
	if !bytes.Equal(got, down) {
		t.Fatalf("client read %d bytes that differ from the %d the device sent", len(got), len(down))
	}
	cli.Close()
	dev.Close()
}

func TestHalves(t *testing.T) {
	l := newLink(t)

	t.Run("accepted stream echoes both ways with half-close", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		ch := l.open(ctx, Request{Port: 22})
		in := l.accept(t)
		if in.Header.Port != 22 {
			t.Fatalf("device read port %d, client asked for 22", in.Header.Port)
		}
		if len(in.Header.Credential) != 0 {
			t.Fatalf("client with no Credential func sent a credential of %d bytes", len(in.Header.Credential))
		}
		dev, err := in.Accept()
		if err != nil {
			t.Fatalf("device Accept of a live client: %v", err)
		}
		r := result(t, ch)
		if r.err != nil {
			t.Fatalf("client Open of an accepted stream: %v", r.err)
		}
		if !r.guard.IsZero() {
			t.Fatalf("Open returned guard %s for a port the device did not challenge", r.guard.Short())
		}
		exchange(t, r.s, dev, randomBytes(t, 256<<10), randomBytes(t, 300<<10))
	})

	t.Run("refusals", func(t *testing.T) {
		sentinels := []error{ErrPortNotPublished, ErrDenied, ErrRefused, ErrTimeout, ErrBadRequest}
		for _, tc := range []struct {
			code StatusCode
			want error
		}{
			{StatusNotPublished, ErrPortNotPublished},
			{StatusDenied, ErrDenied},
			{StatusRefused, ErrRefused},
			{StatusTimeout, ErrTimeout},
			{StatusBadRequest, ErrBadRequest},
		} {
			t.Run(tc.code.String(), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				ch := l.open(ctx, Request{Port: 8080})
				in := l.accept(t)
				reason := "reason for " + tc.code.String()
				in.Refuse(tc.code, reason)
				r := result(t, ch)
				if r.err == nil {
					t.Fatalf("device refused with %v but the client's Open succeeded", tc.code)
				}
				if r.s != nil {
					t.Errorf("Open returned a stream with error %v", r.err)
				}
				if !errors.Is(r.err, tc.want) {
					t.Fatalf("device refused with %v: client error %q does not wrap %q", tc.code, r.err, tc.want)
				}
				for _, other := range sentinels {
					if other != tc.want && errors.Is(r.err, other) {
						t.Errorf("device refused with %v: client error %q also wraps %q", tc.code, r.err, other)
					}
				}
				if !strings.Contains(r.err.Error(), reason) {
					t.Fatalf("client error %q does not carry the device's reason %q", r.err, reason)
				}
			})
		}
	})

	t.Run("challenge", func(t *testing.T) {
		fleet := newFleet(t)
		cred := []byte("membership credential of fleet F, in wire form")
		var mu sync.Mutex
		var asked []identity.ID
		credential := func(f identity.ID) []byte {
			mu.Lock()
			asked = append(asked, f)
			mu.Unlock()
			if f == fleet {
				return cred
			}
			return nil
		}

		// First contact: the client does not know the port is guarded.
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		ch := l.open(ctx, Request{Port: 443, Credential: credential})
		in := l.accept(t)
		if len(in.Header.Credential) != 0 {
			t.Fatalf("client sent a credential of %d bytes unasked", len(in.Header.Credential))
		}
		got, err := in.Challenge(fleet)
		if err != nil {
			t.Fatalf("device Challenge(F): %v", err)
		}
		if !bytes.Equal(got, cred) {
			t.Fatalf("device Challenge(F) got %q, want the client's credential %q", got, cred)
		}
		dev, err := in.Accept()
		if err != nil {
			t.Fatalf("device Accept after the challenge: %v", err)
		}
		r := result(t, ch)
		if r.err != nil {
			t.Fatalf("client Open answering a challenge: %v", r.err)
		}
		if r.guard != fleet {
			t.Fatalf("Open returned guard %q, want the fleet that challenged, %s", r.guard.Short(), fleet.Short())
		}
		mu.Lock()
		if len(asked) != 1 || asked[0] != fleet {
			t.Errorf("Credential was asked for %v, want only the challenging fleet %s", asked, fleet.Short())
		}
		asked = nil
		mu.Unlock()
		// The challenge and its answer are not part of the payload.
		exchange(t, r.s, dev, []byte("after the challenge, up"), []byte("after the challenge, down"))

		// Next time the client knows the guard: the credential comes in
		// the Header and the device need not challenge.
		ch = l.open(ctx, Request{Port: 443, Fleet: r.guard, Credential: credential})
		in = l.accept(t)
		if !bytes.Equal(in.Header.Credential, cred) {
			t.Fatalf("with Fleet F known, the Header carried credential %q, want %q", in.Header.Credential, cred)
		}
		dev, err = in.Accept()
		if err != nil {
			t.Fatalf("device Accept: %v", err)
		}
		r = result(t, ch)
		if r.err != nil {
			t.Fatalf("client Open with a credential in the Header: %v", r.err)
		}
		if !r.guard.IsZero() {
			t.Errorf("Open returned guard %s though the device did not challenge (documented: zero)", r.guard.Short())
		}
		exchange(t, r.s, dev, []byte("up"), []byte("down"))
	})

	t.Run("challenge of a client holding no credential", func(t *testing.T) {
		fleet := newFleet(t)
		other := newFleet(t)
		for _, tc := range []struct {
			name string
			req  Request
		}{
			{"Credential returns nil", Request{Port: 443, Credential: func(identity.ID) []byte { return nil }}},
			{"Credential nil", Request{Port: 443}},
			// A client that knows another fleet guarded the port sends
			// that credential in the Header, but must not hand it to a
			// challenge naming a fleet it does not belong to.
			{"member of another fleet", Request{Port: 443, Fleet: other, Credential: func(f identity.ID) []byte {
				if f == other {
					return []byte("credential of the other fleet")
				}
				return nil
			}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				ch := l.open(ctx, tc.req)
				in := l.accept(t)
				got, err := in.Challenge(fleet)
				if err != nil || got != nil {
					t.Fatalf("device Challenge(F) of a client holding none: %q, %v; want nil, nil", got, err)
				}
				in.Refuse(StatusDenied, "not a member")
				r := result(t, ch)
				if !errors.Is(r.err, ErrDenied) {
					t.Fatalf("client error %v does not wrap ErrDenied", r.err)
				}
				for _, want := range []string{"not a member", "holds no credential of fleet", fleet.Short()} {
					if !strings.Contains(r.err.Error(), want) {
						t.Errorf("client error %q does not mention %q", r.err, want)
					}
				}
				if r.guard != fleet {
					t.Errorf("Open returned guard %q with its refusal, want %s", r.guard.Short(), fleet.Short())
				}
			})
		}
	})

	t.Run("malformed header", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			send []byte
			fin  bool
		}{
			{"version 9", []byte{9, 0, 22, 0, 0}, false},
			{"port 0", []byte{StreamVersion, 0, 0, 0, 0}, false},
			{"credential too long", []byte{StreamVersion, 0, 22, 0xff, 0xff}, false},
			{"truncated then FIN", []byte{StreamVersion, 0, 22}, true},
			{"credential cut short then FIN", []byte{StreamVersion, 0, 22, 0, 9, 'a', 'b'}, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				raw := l.raw(t)
				if _, err := raw.Write(tc.send); err != nil {
					t.Fatal(err)
				}
				if tc.fin {
					raw.Close()
				}
				str := l.next(t)
				t.Cleanup(func() { abortStream(str) })
				in, err := Accept(str, wait)
				if !errors.Is(err, ErrMalformedHeader) {
					t.Fatalf("device Accept of % x: err %v, want one wrapping ErrMalformedHeader", tc.send, err)
				}
				if errors.Is(err, ErrClientGone) {
					t.Errorf("device Accept of % x: err %v wraps ErrClientGone", tc.send, err)
				}
				if in != nil {
					t.Errorf("device Accept returned an Incoming with its error")
				}
				_ = raw.SetReadDeadline(time.Now().Add(wait))
				code, msg, err := ReadStatus(raw)
				if err != nil {
					t.Fatalf("raw client reading the device's answer: %v", err)
				}
				if code != StatusBadRequest {
					t.Fatalf("device answered %v (%q) to a malformed header, want %v", code, msg, StatusBadRequest)
				}
				// The refusal is final: the device ends the stream.
				if n, err := raw.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("after the refusal the raw client read %d bytes, %v; want EOF", n, err)
				}
			})
		}
	})

	t.Run("client resets before its header", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			send []byte
		}{
			{"nothing sent", nil},
			{"part of a header sent", []byte{StreamVersion, 0}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				raw := l.raw(t)
				if _, err := raw.Write(tc.send); err != nil {
					t.Fatal(err)
				}
				raw.CancelWrite(42)
				str := l.next(t)
				t.Cleanup(func() { abortStream(str) })
				start := time.Now()
				in, err := Accept(str, wait)
				if !errors.Is(err, ErrClientGone) {
					t.Fatalf("device Accept of a reset stream: err %v, want one wrapping ErrClientGone", err)
				}
				if in != nil {
					t.Errorf("device Accept returned an Incoming with its error")
				}
				if d := time.Since(start); d > wait/2 {
					t.Errorf("device Accept took %v to see the reset", d)
				}
				var se *quic.StreamError
				if !errors.As(err, &se) || se.ErrorCode != 42 || !se.Remote {
					t.Errorf("device Accept error %v does not carry the client's reset (code 42)", err)
				}
				// A client that reset gets nothing: no status comes back.
				_ = raw.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if n, err := raw.Read(make([]byte, 16)); !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("raw client that reset read %d bytes, %v; want nothing", n, err)
				}
			})
		}
	})

	t.Run("client context ends while the device does not answer", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
			end  func(context.CancelFunc) // ends ctx once the device holds the stream
			want error
		}{
			{"canceled", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) },
				func(cancel context.CancelFunc) { cancel() }, context.Canceled},
			{"deadline", func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 150*time.Millisecond)
			}, func(context.CancelFunc) {}, context.DeadlineExceeded},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := tc.ctx()
				defer cancel()
				ch := l.open(ctx, Request{Port: 22})
				in := l.accept(t) // and never answer
				start := time.Now()
				tc.end(cancel)
				r := result(t, ch)
				if d := time.Since(start); d > 2*time.Second {
					t.Errorf("Open took %v to return after its context ended", d)
				}
				if !errors.Is(r.err, tc.want) {
					t.Fatalf("Open returned %v, want %v", r.err, tc.want)
				}
				if r.s != nil {
					t.Errorf("Open returned a stream with error %v", r.err)
				}
				// Open reset the stream: the device sees it.
				_ = in.str.SetReadDeadline(time.Now().Add(wait))
				if _, err := in.str.Read(make([]byte, 1)); !isRemoteReset(err) {
					t.Fatalf("device read %v after the client gave up; want the client's reset", err)
				}
				// Accepting a stream the client gave up on fails, at once
				// if the client's STOP_SENDING arrived already, else on
				// the first read.
				s, err := in.Accept()
				if err == nil {
					defer watchdog(s)()
					_, err = s.Read(make([]byte, 1))
					s.Abort()
					if !isRemoteReset(err) {
						t.Fatalf("device Accept of a stream the client reset succeeded, and reading it gave %v; want the client's reset", err)
					}
				} else if !errors.Is(err, ErrClientGone) {
					t.Fatalf("device Accept after the client reset the stream: %v, want an error wrapping ErrClientGone", err)
				}
			})
		}
	})

	t.Run("device times out a silent client", func(t *testing.T) {
		const timeout = 150 * time.Millisecond
		for _, tc := range []struct {
			name string
			// setup returns the client's silent stream, and how many
			// streams it opened after it.
			setup func(t *testing.T) (client *quic.Stream, more int)
		}{
			{"nothing sent", func(t *testing.T) (*quic.Stream, int) {
				// A stream that carries no byte never reaches the
				// device by itself; a byte on the next one opens it
				// there too, and the device accepts streams in order.
				silent, next := l.raw(t), l.raw(t)
				if _, err := next.Write([]byte{StreamVersion}); err != nil {
					t.Fatal(err)
				}
				return silent, 1
			}},
			{"part of a header sent", func(t *testing.T) (*quic.Stream, int) {
				raw := l.raw(t)
				if _, err := raw.Write([]byte{StreamVersion, 0}); err != nil {
					t.Fatal(err)
				}
				return raw, 0
			}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				raw, more := tc.setup(t)
				str := l.next(t)
				t.Cleanup(func() { abortStream(str) })
				for range more {
					abortStream(l.next(t))
				}
				start := time.Now()
				in, err := Accept(str, timeout)
				d := time.Since(start)
				if err == nil {
					t.Fatalf("device Accept of a silent client succeeded: %+v", in.Header)
				}
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Errorf("device Accept error %v does not wrap the deadline", err)
				}
				if d < timeout*2/3 || d > timeout+2*time.Second {
					t.Errorf("device Accept with timeout %v returned after %v", timeout, d)
				}
				// Whatever the device answers, it is a final refusal.
				_ = raw.SetReadDeadline(time.Now().Add(wait))
				if code, msg, err := ReadStatus(raw); err == nil && (code == StatusOK || code == StatusCredentialRequired) {
					t.Errorf("device answered a silent client %v (%q)", code, msg)
				}
			})
		}
	})

	t.Run("challenged client that does not answer", func(t *testing.T) {
		const timeout = 300 * time.Millisecond
		fleet := newFleet(t)
		raw := l.raw(t)
		hdr, err := AppendHeader(nil, Header{Port: 443})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := raw.Write(hdr); err != nil {
			t.Fatal(err)
		}
		str := l.next(t)
		t.Cleanup(func() { abortStream(str) })
		in, err := Accept(str, timeout)
		if err != nil {
			t.Fatalf("device Accept: %v", err)
		}
		start := time.Now()
		cred, err := in.Challenge(fleet)
		if !errors.Is(err, ErrMalformedHeader) || errors.Is(err, ErrClientGone) {
			t.Fatalf("Challenge of a client that never answers: %q, %v; want an error wrapping ErrMalformedHeader", cred, err)
		}
		if d := time.Since(start); d > timeout+2*time.Second {
			t.Errorf("Challenge returned after %v, with a Header deadline of %v", d, timeout)
		}
		_ = raw.SetReadDeadline(time.Now().Add(wait))
		code, msg, err := ReadStatus(raw)
		if err != nil || code != StatusCredentialRequired || msg != fleet.String() {
			t.Fatalf("raw client read %v %q %v, want the challenge naming %s", code, msg, err, fleet)
		}
		if code, msg, err = ReadStatus(raw); err != nil || code == StatusOK || code == StatusCredentialRequired {
			t.Fatalf("raw client read %v %q %v after the challenge, want a final refusal", code, msg, err)
		}
	})
}

// isRemoteReset reports whether err is the peer's reset of a stream.
func isRemoteReset(err error) bool {
	var se *quic.StreamError
	return errors.As(err, &se) && se.Remote
}

// TestHalvesKinds runs host-keys and ping requests through both halves:
// what the client asked reaches the device, the device's reply reaches the
// client, and an older device's refusal reads as ErrDeviceTooOld.
func TestHalvesKinds(t *testing.T) {
	l := newLink(t)
	type asked struct {
		keys [][]byte
		err  error
	}
	hostKeys := func(ctx context.Context, req Request) <-chan asked {
		ch := make(chan asked, 1)
		go func() {
			keys, _, err := HostKeys(ctx, l.conn, req)
			ch <- asked{keys, err}
		}()
		return ch
	}
	answer := func(t *testing.T, ch <-chan asked) asked {
		t.Helper()
		select {
		case a := <-ch:
			return a
		case <-time.After(wait):
			t.Fatal("the client did not return")
			return asked{}
		}
	}

	t.Run("host keys", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		keys := [][]byte{[]byte("ssh-ed25519 blob"), bytes.Repeat([]byte{7}, MaxHostKeyLen)}
		ch := hostKeys(ctx, Request{Kind: KindConnect, Port: 22})
		in := l.accept(t)
		if in.Header.Kind != KindHostKeys || in.Header.Port != 22 {
			t.Fatalf("device read %+v, want host keys of port 22", in.Header)
		}
		body, err := AppendHostKeys(nil, keys)
		if err != nil {
			t.Fatal(err)
		}
		if err := in.Reply(body); err != nil {
			t.Fatalf("device Reply: %v", err)
		}
		a := answer(t, ch)
		if a.err != nil || len(a.keys) != 2 || !bytes.Equal(a.keys[0], keys[0]) || !bytes.Equal(a.keys[1], keys[1]) {
			t.Fatalf("client got %d keys, %v; want the device's 2", len(a.keys), a.err)
		}
	})

	t.Run("host keys challenged", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		fleet := newFleet(t)
		cred := []byte("credential")
		ch := hostKeys(ctx, Request{Port: 22, Credential: func(f identity.ID) []byte {
			if f == fleet {
				return cred
			}
			return nil
		}})
		in := l.accept(t)
		got, err := in.Challenge(fleet)
		if err != nil || !bytes.Equal(got, cred) {
			t.Fatalf("device Challenge: %q, %v", got, err)
		}
		body, _ := AppendHostKeys(nil, [][]byte{[]byte("key")})
		if err := in.Reply(body); err != nil {
			t.Fatalf("device Reply: %v", err)
		}
		if a := answer(t, ch); a.err != nil || len(a.keys) != 1 {
			t.Fatalf("client got %d keys, %v", len(a.keys), a.err)
		}
	})

	t.Run("not ssh", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		ch := hostKeys(ctx, Request{Port: 80})
		l.accept(t).Refuse(StatusNotSSH, "no SSH banner")
		a := answer(t, ch)
		if !errors.Is(a.err, ErrNotSSH) || !strings.Contains(a.err.Error(), "no SSH banner") {
			t.Fatalf("client error %v, want ErrNotSSH with the device's reason", a.err)
		}
	})

	t.Run("malformed reply", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		ch := hostKeys(ctx, Request{Port: 22})
		in := l.accept(t)
		if err := in.Reply([]byte{MaxHostKeys + 1}); err != nil {
			t.Fatal(err)
		}
		if a := answer(t, ch); !errors.Is(a.err, ErrMalformedHostKeys) {
			t.Fatalf("client error %v, want ErrMalformedHostKeys", a.err)
		}
	})

	t.Run("device silent after OK", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		ch := hostKeys(ctx, Request{Port: 22})
		in := l.accept(t)
		if _, err := in.str.Write(AppendStatus(nil, StatusOK, "")); err != nil {
			t.Fatal(err)
		}
		if a := answer(t, ch); !errors.Is(a.err, context.DeadlineExceeded) {
			t.Fatalf("client error %v, want its context's deadline", a.err)
		}
	})

	t.Run("ping", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		ch := make(chan error, 1)
		go func() { ch <- Ping(ctx, l.conn) }()
		in := l.accept(t)
		if in.Header.Kind != KindPing || in.Header.Port != 0 {
			t.Fatalf("device read %+v, want a ping", in.Header)
		}
		if err := in.Reply(nil); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-ch:
			if err != nil {
				t.Fatalf("Ping: %v", err)
			}
		case <-time.After(wait):
			t.Fatal("Ping did not return")
		}
	})

	// An older device reads only version 1: it answers the version-2
	// Header StatusBadRequest, as its ReadHeader did.
	t.Run("older device", func(t *testing.T) {
		for _, kind := range []Kind{KindHostKeys, KindPing} {
			t.Run(kind.String(), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				ch := make(chan error, 1)
				go func() {
					if kind == KindPing {
						ch <- Ping(ctx, l.conn)
						return
					}
					_, _, err := HostKeys(ctx, l.conn, Request{Port: 22})
					ch <- err
				}()
				str := l.next(t)
				t.Cleanup(func() { abortStream(str) })
				var b [6]byte
				_ = str.SetReadDeadline(time.Now().Add(wait))
				if _, err := io.ReadFull(str, b[:]); err != nil || b[0] != KindVersion {
					t.Fatalf("device read % x, %v; want a version-2 header", b, err)
				}
				in := &Incoming{str: str}
				in.Refuse(StatusBadRequest, "malformed stream header")
				select {
				case err := <-ch:
					if !errors.Is(err, ErrDeviceTooOld) || !strings.Contains(err.Error(), "older tunnel") {
						t.Fatalf("client error %v, want ErrDeviceTooOld", err)
					}
				case <-time.After(wait):
					t.Fatal("the client did not return")
				}
			})
		}
	})
}

package peer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// The agent vouches for the SSH host keys of a port's local service by
// asking that service itself, as ssh-keyscan does: a key exchange per key
// type, each aborted in its host-key callback, before any authentication.
// The client trusts the answer because it comes over the end-to-end
// connection from the device whose key it dialed.

// Bounds of host-key scans, which clients a port allows can ask for at any
// rate (ssh runs KnownHostsCommand on every connection).
const (
	// scanTimeout bounds one scan, all its handshakes, under the client's
	// stream.AnswerTimeout so that the client hears why.
	scanTimeout = 5 * time.Second
	// scanFresh is how long a scan's keys answer for their target.
	scanFresh = 60 * time.Second
	// maxScans caps the scans the agent runs at once; more wait for a
	// slot, within their own timeout.
	maxScans = 4
)

// keyFamilies are the host key types asked for, each with the algorithms
// that prove it, in the order they are offered. Security-key and DSA host
// keys are left out: x/crypto/ssh does not verify the first as host keys,
// and OpenSSH dropped the second.
var keyFamilies = []keyFamily{
	{ssh.KeyAlgoED25519, []string{ssh.KeyAlgoED25519}},
	{ssh.KeyAlgoECDSA256, []string{ssh.KeyAlgoECDSA256}},
	{ssh.KeyAlgoECDSA384, []string{ssh.KeyAlgoECDSA384}},
	{ssh.KeyAlgoECDSA521, []string{ssh.KeyAlgoECDSA521}},
	{ssh.KeyAlgoRSA, []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
}

type keyFamily struct {
	keyType string
	algos   []string
}

// errNotSSH is a scan that got no host key: the service is not sshd, or
// offers none of keyFamilies.
var errNotSSH = errors.New("no SSH key exchange")

// keyScanner scans targets for their host keys, one scan per target at a
// time (others asking for the same target wait for it), at most maxScans
// at once, each answer kept scanFresh.
type keyScanner struct {
	slots chan struct{}
	mu    sync.Mutex
	// scans holds one entry per target asked: targets are the agent's
	// ports', so it is bounded by its configuration.
	scans map[string]*scan
}

type scan struct {
	done chan struct{} // closed when keys and err are set
	at   time.Time
	keys [][]byte
	err  error
}

func newKeyScanner() *keyScanner {
	return &keyScanner{slots: make(chan struct{}, maxScans), scans: make(map[string]*scan)}
}

// dialFunc dials a port's local service, PROXY header included if the port
// wants one.
type dialFunc func(ctx context.Context) (net.Conn, error)

// HostKeys returns the host keys of target in SSH wire format, from a scan
// at most scanFresh old. Errors are a dialError (the caller answers it as a
// connect's), or wrap errNotSSH or context.DeadlineExceeded.
func (k *keyScanner) HostKeys(ctx context.Context, target string, dial dialFunc) ([][]byte, error) {
	k.mu.Lock()
	s, ok := k.scans[target]
	if ok {
		select {
		case <-s.done:
			// A failed scan is not kept: the service may be starting.
			ok = s.err == nil && time.Since(s.at) < scanFresh
		default: // under way: wait for it
		}
	}
	if !ok {
		s = &scan{done: make(chan struct{})}
		k.scans[target] = s
		// The scan runs in this caller's goroutine, bounded by scanTimeout
		// and not by its ctx: the others waiting for it do not fail
		// because the first client left.
		k.mu.Unlock()
		s.keys, s.err = k.run(dial)
		s.at = time.Now()
		close(s.done)
	} else {
		k.mu.Unlock()
	}
	select {
	case <-s.done:
		return s.keys, s.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (k *keyScanner) run(dial dialFunc) ([][]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), scanTimeout)
	defer cancel()
	select {
	case k.slots <- struct{}{}:
		defer func() { <-k.slots }()
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: too many scans under way", context.DeadlineExceeded)
	}
	return scanHostKeys(ctx, dial)
}

// scanHostKeys runs one key exchange per key type the service has: each
// offers every type not found yet, and the server picks one it has, until
// it has none left.
func scanHostKeys(ctx context.Context, dial dialFunc) ([][]byte, error) {
	left := slices.Clone(keyFamilies)
	var keys [][]byte
	for len(left) > 0 {
		var algos []string
		for _, f := range left {
			algos = append(algos, f.algos...)
		}
		key, err := handshake(ctx, dial, algos)
		if err != nil {
			if len(keys) > 0 && ctx.Err() == nil && errors.Is(err, errNotSSH) {
				break // the server has no key of the types left
			}
			if len(keys) > 0 {
				// Out of time with some keys: a client pinning fewer
				// keys than the server has would refuse a good server.
				return nil, fmt.Errorf("after %d host keys: %w", len(keys), err)
			}
			return nil, err
		}
		i := slices.IndexFunc(left, func(f keyFamily) bool { return f.keyType == key.Type() })
		if i < 0 {
			return nil, fmt.Errorf("%w: server offered a %s key, not asked for", errNotSSH, key.Type())
		}
		left = slices.Delete(left, i, i+1)
		if b := key.Marshal(); !slices.ContainsFunc(keys, func(k []byte) bool { return bytes.Equal(k, b) }) {
			keys = append(keys, b)
		}
	}
	return keys, nil
}

// errGotKey aborts a handshake once the host key is in hand: the scan
// never authenticates.
var errGotKey = errors.New("host key received")

// handshake runs one key exchange offering algos and returns the server's
// host key. A dial error is returned as it is; any other failure wraps
// errNotSSH, unless ctx ended.
func handshake(ctx context.Context, dial dialFunc, algos []string) (ssh.PublicKey, error) {
	conn, err := dial(ctx)
	if err != nil {
		return nil, dialError{err}
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var key ssh.PublicKey
	cfg := &ssh.ClientConfig{
		User:              "tunnel-keyscan",
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			key = k
			return errGotKey
		},
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, conn.RemoteAddr().String(), cfg)
	if err == nil {
		// Cannot happen: the callback fails every handshake.
		ssh.NewClient(c, chans, reqs).Close()
		return nil, fmt.Errorf("%w: handshake completed without a host key check", errNotSSH)
	}
	if key != nil {
		return key, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w within %v", errNotSSH, scanTimeout)
	}
	return nil, fmt.Errorf("%w: %w", errNotSSH, err)
}

// dialError is a scan that could not reach its service at all, which the
// agent answers as it would a connect.
type dialError struct{ err error }

func (e dialError) Error() string { return e.err.Error() }
func (e dialError) Unwrap() error { return e.err }

package socks

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/transport/limit"
)

// OwnerOnly is socksd's door when it asks for no password: it serves the
// loopback clients whose socket belongs to the user socksd runs as, or to
// root, and refuses other local users' — on a shared machine they could
// otherwise use this user's node key and fleet credentials. The kernel
// says whose socket it is (peercred_linux.go), so nothing a client sends
// matters. A refused client gets SOCKS reply 0x02 or HTTP 403, and socksd
// logs one line per user per 10 s, with the number not logged.
//
// It is made on Linux only; elsewhere NewOwnerOnly returns nil, whose
// Admit admits everyone.
type OwnerOnly struct {
	log    zerolog.Logger
	uids   [2]uint32 // this process's, and root's
	report *limit.Reporter
	lookup func(local, remote netip.AddrPort) (uint32, error)
}

// ErrOtherUser is the refusal of a client of another local user, or of
// one whose user cannot be found (it left, or is not local).
var ErrOtherUser = errors.New("socks client is not this user's")

// NewOwnerOnly returns the check, or nil where it is not supported.
func NewOwnerOnly(log zerolog.Logger) *OwnerOnly {
	if !uidLookupSupported {
		return nil
	}
	return &OwnerOnly{log: log, uids: [2]uint32{uint32(os.Getuid()), 0},
		report: limit.NewReporter(refusalReportEvery, 1, refusalReportKeys), lookup: socketUID}
}

// Admit returns nil if c's client may be served, else an error wrapping
// ErrOtherUser; it logs the refusal.
func (o *OwnerOnly) Admit(c net.Conn) error {
	if o == nil {
		return nil
	}
	uid, err := o.uid(c)
	if err != nil {
		// Fail closed: a client whose user is unknown is nobody's.
		return o.refuse(c, "unknown", fmt.Errorf("%w: its user cannot be found: %w", ErrOtherUser, err))
	}
	if uid == o.uids[0] || uid == o.uids[1] {
		return nil
	}
	return o.refuse(c, strconv.FormatUint(uint64(uid), 10), fmt.Errorf("%w: it is uid %d's", ErrOtherUser, uid))
}

// uid returns the user of c's client socket.
func (o *OwnerOnly) uid(c net.Conn) (uint32, error) {
	local, lok := c.RemoteAddr().(*net.TCPAddr) // the client's end is its local address
	remote, rok := c.LocalAddr().(*net.TCPAddr)
	if !lok || !rok {
		return 0, errors.New("not a TCP connection")
	}
	return o.lookup(local.AddrPort(), remote.AddrPort())
}

// uidOf is uid for PreAuth, which only counts.
func (o *OwnerOnly) uidOf(c net.Conn) (uint32, bool) {
	uid, err := o.uid(c)
	return uid, err == nil
}

func (o *OwnerOnly) refuse(c net.Conn, uid string, err error) error {
	if log, n := o.report.Note(uid, time.Now()); log {
		o.log.Warn().Str("client", remote(c)).Str("uid", uid).Int("suppressed", n).Err(err).
			Msg("socks client of another local user refused (--allow-local-users serves every local user)")
	}
	return err
}

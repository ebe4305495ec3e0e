package socks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tunnel-dev/tunnel/transport"
)

// errSocks4NoPassword: a server with a password file cannot serve SOCKS4,
// which has no way to carry one.
var errSocks4NoPassword = errors.New("socks4 carries no password, and this server requires one")

// serveSOCKS4 answers a SOCKS4 or SOCKS4a request (its first byte read
// back from c) at once: a CONNECT of SOCKS4a is served as a SOCKS5 CONNECT
// to its host name would be, through the same door and Dial; a SOCKS4
// CONNECT to an IP goes to the Dial as an IP destination of SOCKS5 does,
// which refuses it unless a fallback serves such hosts. Anything else, and
// every refusal or failure, is 0x5B: SOCKS4 has no finer codes (the log
// line keeps the SOCKS5 one).
func (s *Server) serveSOCKS4(ctx context.Context, c net.Conn, client transport.HalfConn, admitted, stopWatch func(), start time.Time) {
	log := s.Log.With().Int("socks", 4).Logger()
	reject := func() { _, _ = c.Write(appendReply4(nil, Reply4Rejected)) }
	r4, err := ReadRequest4(c)
	if err != nil {
		// A client still there gets its answer; one gone costs a failed
		// write.
		reject()
		log.Debug().Str("client", remote(c)).Err(err).Msg("socks4 request unreadable")
		return
	}
	req := r4.Target()
	switch {
	case s.Auth != nil:
		reject()
		_ = s.Auth.refuse(c.RemoteAddr(), "", fmt.Errorf("%w: %w", errNoCredentials, errSocks4NoPassword))
		return
	case s.Admit != nil:
		if err := s.Admit(c); err != nil {
			reject()
			return // Admit logged it, as often as it logs refusals
		}
	}
	if req.Cmd != CmdConnect {
		err := fmt.Errorf("%w: %#02x", ErrCommandNotSupported, req.Cmd)
		reject()
		s.logRequest(log, start, c, req, "", ReplyCode(err), err, 0, 0)
		return
	}
	admitted()
	s.connect(ctx, log, c, client, stopWatch, req, "", start, func(code byte) []byte {
		if code == ReplySucceeded {
			return appendReply4(nil, Reply4Granted)
		}
		return appendReply4(nil, Reply4Rejected)
	})
}

package roles

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/socks/dialer"
)

// Queries a one-shot command asks of a device — its SSH host keys, a ping
// — through the Reacher's way to devices: the running socksd's control
// socket, or a node of its own. A SOCKS5 server cannot carry them.

// queryTimeout bounds a query the control socket serves: the device
// answers within stream.AnswerTimeout once connected.
const queryTimeout = 20 * time.Second

// HostKeys returns the SSH host keys of the service behind host:port, as
// the device vouches for them. Errors say what their outcome means first.
func (r *Reacher) HostKeys(ctx context.Context, host string, port uint16) ([]ssh.PublicKey, error) {
	switch {
	case r.cfg.SOCKS != "":
		return nil, errors.New("host keys cannot be asked through a SOCKS5 server: use the running socksd or --relay")
	case r.sock != "":
		rep, err := r.ask(ctx, fmt.Sprintf("hostkeys %s %d", host, port), host)
		if err != nil {
			return nil, err
		}
		var keys []ssh.PublicKey
		for i, b := range rep.Keys {
			k, err := ssh.ParsePublicKey(b)
			if err != nil {
				return nil, fmt.Errorf("host keys of %s:%d: key %d from socksd: %w", host, port, i+1, err)
			}
			keys = append(keys, k)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("host keys of %s:%d: socksd returned none", host, port)
		}
		return keys, nil
	}
	keys, err := r.node.Dialer.HostKeys(ctx, host, port)
	if err != nil {
		return nil, queryError(err)
	}
	return keys, nil
}

// Ping asks the device named host for an answer, and says by which path
// it came and how fast.
func (r *Reacher) Ping(ctx context.Context, host string) (dialer.Pong, error) {
	switch {
	case r.cfg.SOCKS != "":
		return dialer.Pong{}, errors.New("a SOCKS5 server cannot ping: use the running socksd or --relay")
	case r.sock != "":
		rep, err := r.ask(ctx, "ping "+host, host)
		if err != nil {
			return dialer.Pong{}, err
		}
		if rep.Pong == nil {
			return dialer.Pong{}, fmt.Errorf("ping %s: socksd answered no pong", host)
		}
		return *rep.Pong, nil
	}
	p, err := r.node.Dialer.Ping(ctx, host)
	if err != nil {
		return dialer.Pong{}, queryError(err)
	}
	return p, nil
}

// ask sends one query line to the running socksd and reads its reply.
func (r *Reacher) ask(ctx context.Context, line, host string) (controlReply, error) {
	if host == "" || strings.ContainsAny(host, " \t\r\n") {
		return controlReply{}, fmt.Errorf("host %q: not a host name", trunc(host))
	}
	c, err := controlRequest(ctx, r.sock, line)
	if err != nil {
		return controlReply{}, fmt.Errorf("ask socksd: %w", err)
	}
	defer c.Close()
	reply, err := readLine(c)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() != nil {
			err = ctx.Err()
		}
		return controlReply{}, fmt.Errorf("ask socksd: %w", err)
	}
	var rep controlReply
	if err := json.Unmarshal([]byte(reply), &rep); err != nil {
		return controlReply{}, fmt.Errorf("ask socksd: %w", err)
	}
	if rep.Error != "" {
		return controlReply{}, errors.New(rep.Error)
	}
	return rep, nil
}

// queryError says what a failed query's outcome means, unless the error
// says it already (the dialer's name what was asked of which device).
func queryError(err error) error {
	if why := dialer.Classify(err).Explain(); !strings.Contains(err.Error(), why) {
		return fmt.Errorf("%s: %w", why, err)
	}
	return err
}

func (s *controlServer) hostKeys(ctx context.Context, c net.Conn, host string, port uint16) {
	_ = c.SetDeadline(time.Now().Add(queryTimeout + statusTimeout))
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	keys, err := s.n.Dialer.HostKeys(qctx, host, port)
	cancel()
	var rep controlReply
	if err != nil {
		rep.Error = queryError(err).Error()
	}
	for _, k := range keys {
		rep.Keys = append(rep.Keys, k.Marshal())
	}
	_ = json.NewEncoder(c).Encode(rep)
}

func (s *controlServer) ping(ctx context.Context, c net.Conn, host string) {
	_ = c.SetDeadline(time.Now().Add(queryTimeout + statusTimeout))
	qctx, cancel := context.WithTimeout(ctx, queryTimeout)
	p, err := s.n.Dialer.Ping(qctx, host)
	cancel()
	var rep controlReply
	if err != nil {
		rep.Error = queryError(err).Error()
	} else {
		rep.Pong = &p
	}
	_ = json.NewEncoder(c).Encode(rep)
}

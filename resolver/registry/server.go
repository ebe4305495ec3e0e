package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/identity"
	"github.com/tunnel-dev/tunnel/resolver/internal/wire"
	"github.com/tunnel-dev/tunnel/transport"
)

// Server is the registry side of a rendezvous node: it accepts nodes'
// outer connections, records who is online, answers lookups, and attaches
// each registered node to the packet relay so that frames reach it.
type Server struct {
	Key      *identity.Key
	Relay    *transport.Relay
	Presence Presence
	Log      zerolog.Logger
	// Limits bound what strangers may make the node spend; zero fields
	// take DefaultLimits.
	Limits Limits
	// Refused counts what the Limits refused.
	Refused Refusals
	// Stats counts the rest of the server's work.
	Stats Stats

	guard *guard
	mu    sync.Mutex
	regs  map[transport.Endpoint]*registration // the live registration of each endpoint
}

// Serve accepts connections until ctx ends. It returns after every
// goroutine it started has returned.
func (s *Server) Serve(ctx context.Context) error {
	s.guard = newGuard(s.Limits, &s.Refused, s.Log)
	ln, err := s.Relay.Listen(s.Key, s.guard.listenConfig())
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.regs = make(map[transport.Endpoint]*registration)
	s.mu.Unlock()
	if err := transport.ServeConns(ctx, ln, s.serveConn); err != nil {
		return fmt.Errorf("accept relay connection: %w", err)
	}
	return nil
}

// registration is one node's state on one connection.
type registration struct {
	id       identity.ID
	endpoint transport.Endpoint
	addr     netip.AddrPort
	detach   func()
	device   bool
}

func (s *Server) serveConn(ctx context.Context, conn *quic.Conn) {
	id, err := transport.PeerConnID(conn)
	if err != nil {
		conn.CloseWithError(1, "no identity")
		return
	}
	log := s.Log.With().Str("peer", id.Short()).Str("addr", conn.RemoteAddr().String()).Logger()
	log.Debug().Msg("relay connection")
	var mu sync.Mutex
	var reg *registration
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if reg != nil {
			s.unregister(reg, log)
		}
		conn.CloseWithError(0, "")
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Go(func() {
			_ = str.SetDeadline(time.Now().Add(wire.RequestTimeout))
			typ, body, err := wire.ReadMsg(str)
			if err != nil {
				str.CancelRead(1)
				str.CancelWrite(1)
				return
			}
			status, reply := s.handle(ctx, conn, id, typ, body, &mu, &reg, log)
			if err := wire.WriteMsg(str, status, reply); err != nil {
				str.CancelWrite(1)
				return
			}
			str.Close()
		})
	}
}

func (s *Server) handle(ctx context.Context, conn *quic.Conn, id identity.ID, typ byte, body []byte,
	mu *sync.Mutex, reg **registration, log zerolog.Logger) (byte, []byte) {
	switch typ {
	case wire.ReqRegister:
		req, err := wire.ParseRegister(body)
		if err != nil {
			return wire.StatusBadRequest, nil
		}
		ep, device := req.Endpoint, req.Publishes
		if transport.DeriveEndpoint(id, req.Nonce) != ep {
			// Not this key's Endpoint: taking it would squat another
			// node's, so no registration can.
			log.Debug().Str("endpoint", ep.String()).Msg("registration of an endpoint the key does not derive; refused")
			return wire.StatusBadRequest, nil
		}
		addr, ok := udpAddr(conn.RemoteAddr())
		if !ok {
			return wire.StatusInternal, nil
		}
		r := &registration{id: id, endpoint: ep, addr: addr, device: device}
		mu.Lock()
		if *reg != nil {
			s.unregister(*reg, log)
			*reg = nil
		}
		s.mu.Lock()
		cur, taken := s.regs[ep]
		if taken && cur.id != id {
			s.mu.Unlock()
			mu.Unlock()
			log.Warn().Str("endpoint", ep.String()).Msg("endpoint claimed by another key; registration refused")
			return wire.StatusConflict, nil
		}
		if !taken && len(s.regs) >= s.guard.limits.MaxRegistrations {
			s.mu.Unlock()
			mu.Unlock()
			s.Refused.Registrations.Add(1)
			s.guard.refusal(id.String(), "registrations", "total", "registration refused")
			return wire.StatusBusy, nil
		}
		// A node that reconnected before its old connection timed out
		// replaces it: the newest registration of an endpoint is the live one.
		if taken && cur.device {
			s.Stats.Devices.Add(-1)
		}
		if device {
			s.Stats.Devices.Add(1)
		}
		s.regs[ep] = r
		s.mu.Unlock()
		r.detach = s.Relay.Attach(ep, addr)
		*reg = r
		mu.Unlock()
		if device {
			// With the shared registry down the device is still held and
			// served here; the registry learns of it when it returns (the
			// presence logs the outage).
			if err := s.Presence.Set(ctx, id, Record{Endpoint: ep}); err != nil {
				s.Stats.Errors.Add(1)
				if !errors.Is(err, ErrUnavailable) {
					log.Error().Err(err).Msg("record presence")
					return wire.StatusInternal, nil
				}
			}
		}
		log.Info().Str("endpoint", ep.String()).Bool("device", device).Msg("node registered")
		return wire.StatusOK, wire.ObservedBody(addr)
	case wire.ReqPing:
		// QUIC follows a node whose NAT mapping changed (connection
		// migration); the relay route follows QUIC here.
		if addr, ok := udpAddr(conn.RemoteAddr()); ok {
			mu.Lock()
			if r := *reg; r != nil && r.addr != addr {
				s.mu.Lock()
				live := s.regs[r.endpoint] == r
				s.mu.Unlock()
				if live {
					r.detach()
					r.detach = s.Relay.Attach(r.endpoint, addr)
					log.Info().Str("endpoint", r.endpoint.String()).Str("from", r.addr.String()).Str("to", addr.String()).Msg("node moved")
					r.addr = addr
				}
			}
			mu.Unlock()
		}
		return wire.StatusOK, nil
	case wire.ReqLookup:
		target, err := wire.ParseLookup(body)
		if err != nil {
			s.Stats.Lookups[LookupBadRequest].Add(1)
			return wire.StatusBadRequest, nil
		}
		if !s.guard.lookup(id) {
			s.Stats.Lookups[LookupBusy].Add(1)
			return wire.StatusBusy, nil
		}
		rec, err := s.Presence.Get(ctx, target)
		if errors.Is(err, ErrNotFound) {
			s.Stats.Lookups[LookupNotFound].Add(1)
			log.Debug().Str("device", target.Short()).Msg("lookup: offline")
			return wire.StatusNotFound, nil
		}
		if err != nil {
			s.Stats.Errors.Add(1)
		}
		if errors.Is(err, ErrUnavailable) {
			s.Stats.Lookups[LookupUnavailable].Add(1)
			log.Debug().Str("device", target.Short()).Msg("lookup: registry unavailable")
			return wire.StatusUnavailable, nil
		}
		if err != nil {
			s.Stats.Lookups[LookupError].Add(1)
			log.Error().Err(err).Msg("lookup")
			return wire.StatusInternal, nil
		}
		found := wire.Found{Endpoint: rec.Endpoint}
		result := LookupFound
		if !rec.Node.IsZero() && rec.Node != s.Key.ID() {
			found.Home, found.HomeAddr = rec.Node, rec.Addr
			result = LookupRedirected
		}
		s.Stats.Lookups[result].Add(1)
		return wire.FoundReply(found)
	}
	return wire.StatusBadRequest, nil
}

// unregister undoes a registration; the caller holds the connection's lock.
// A registration that a newer one replaced undoes nothing: the relay route
// is the newer one's, even when it came from the same address.
func (s *Server) unregister(r *registration, log zerolog.Logger) {
	s.mu.Lock()
	live := s.regs[r.endpoint] == r
	if live {
		delete(s.regs, r.endpoint)
		r.detach()
		if r.device {
			s.Stats.Devices.Add(-1)
		}
	}
	s.mu.Unlock()
	if !live {
		log.Debug().Str("endpoint", r.endpoint.String()).Msg("replaced connection gone")
		return
	}
	if r.device {
		// A fresh context: the server's may already be done, and the record
		// must still go.
		ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
		defer cancel()
		if err := s.Presence.Delete(ctx, r.id, Record{Endpoint: r.endpoint}); err != nil {
			s.Stats.Errors.Add(1)
			if !errors.Is(err, ErrUnavailable) {
				log.Error().Err(err).Msg("remove presence")
			}
		}
	}
	log.Info().Str("endpoint", r.endpoint.String()).Msg("node gone")
}

func udpAddr(a net.Addr) (netip.AddrPort, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

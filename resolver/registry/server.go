package registry

import (
	"container/list"
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

	// LeaseTTL is how long the leases it grants last; zero takes
	// DefaultLeaseTTL.
	LeaseTTL time.Duration
	// NoLeases makes the server grant no lease, as one from before
	// leases did: for tests of newer nodes against it.
	NoLeases bool
	// leaseIdle, when set, replaces the package's (tests).
	leaseIdle time.Duration

	guard   *guard
	mu      sync.Mutex
	regs    map[transport.Endpoint]*registration // the live registration of each endpoint
	idle    *list.List                           // leased registrations without a connection, oldest keep first
	records chan recordOp                        // records to write for keeps (lease.go)
}

// Serve accepts connections until ctx ends. It returns after every
// goroutine it started has returned.
func (s *Server) Serve(ctx context.Context) error {
	s.guard = newGuard(s.Limits, &s.Refused, s.Log)
	s.mu.Lock()
	s.regs = make(map[transport.Endpoint]*registration)
	s.idle = list.New()
	s.records = make(chan recordOp, recordQueue)
	s.mu.Unlock()
	if !s.NoLeases {
		s.Relay.SetKeepHandler(s.keep)
	}
	ln, err := s.Relay.Listen(s.Key, s.guard.listenConfig())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.sweepLeases(ctx) })
	wg.Go(func() { s.writeRecords(ctx) })
	defer func() {
		cancel()
		wg.Wait()
	}()
	if err := transport.ServeConns(ctx, ln, s.serveConn); err != nil {
		return fmt.Errorf("accept relay connection: %w", err)
	}
	return nil
}

// registration is one node's state on one connection, or on a lease
// (lease.go) once the node closed it.
type registration struct {
	id       identity.ID
	endpoint transport.Endpoint
	device   bool
	// leased: the registration outlives its connection; expires names
	// the lease (the relay's, as in the keeps).
	leased  bool
	expires uint64

	// Guarded by Server.mu once the registration is in Server.regs.
	connOpen bool          // its connection is open: it lasts, leased or not
	idleAt   *list.Element // in Server.idle: leased, its connection closed
	addr     netip.AddrPort
	detach   func()
	seq      uint64    // the last keep taken
	lastKeep time.Time // or the registration's time, before any keep
}

func (s *Server) serveConn(ctx context.Context, conn *quic.Conn) {
	id, err := transport.PeerConnID(conn)
	if err != nil {
		conn.CloseWithError(1, "no identity")
		return
	}
	s.Stats.Conns.Add(1)
	defer func() {
		s.Stats.Conns.Add(-1)
		s.Stats.Closed.Add(1)
	}()
	log := s.Log.With().Str("peer", id.Short()).Str("addr", conn.RemoteAddr().String()).Logger()
	log.Debug().Msg("relay connection")
	var mu sync.Mutex
	var reg *registration
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		if reg != nil {
			// A lease outlives the connection only once the node has
			// shown it holds it, with a keep: a node that never got the
			// grant (it stopped, or the reply was lost) has no way to
			// keep or release the registration.
			s.mu.Lock()
			reg.connOpen = false
			held := reg.leased && reg.seq > 0
			if held && s.regs[reg.endpoint] == reg {
				reg.idleAt = s.idle.PushBack(reg)
			}
			s.mu.Unlock()
			if !held {
				s.unregister(reg, log)
			}
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
		r := &registration{id: id, endpoint: ep, addr: addr, device: device, connOpen: true, lastKeep: time.Now()}
		var grant *wire.Grant
		if req.Lease {
			ttl := DefaultLeaseTTL
			if s.LeaseTTL > 0 {
				ttl = s.LeaseTTL.Truncate(time.Second)
			}
			if l, ok := s.Relay.Lease(id, ep, device, ttl); ok && ttl > 0 {
				r.leased, r.expires = true, l.Expires
				grant = &wire.Grant{Expires: l.Expires, TTL: ttl, Key: l.Key}
			}
		}
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
		if taken && cur.idleAt != nil {
			s.idle.Remove(cur.idleAt)
			cur.idleAt = nil
		}
		if device {
			s.Stats.Devices.Add(1)
		}
		r.detach = s.Relay.Attach(ep, addr)
		s.regs[ep] = r
		s.mu.Unlock()
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
		log.Info().Str("endpoint", ep.String()).Bool("device", device).Bool("leased", grant != nil).Msg("node registered")
		if grant != nil {
			return wire.StatusOK, wire.GrantBody(addr, *grant)
		}
		return wire.StatusOK, wire.ObservedBody(addr)
	case wire.ReqPing:
		// QUIC follows a node whose NAT mapping changed (connection
		// migration); the relay route follows QUIC here.
		if addr, ok := udpAddr(conn.RemoteAddr()); ok {
			mu.Lock()
			if r := *reg; r != nil {
				s.mu.Lock()
				if s.regs[r.endpoint] == r {
					s.moveLocked(r, addr, log)
				}
				s.mu.Unlock()
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

// moveLocked moves r's relay route to addr, if it is elsewhere; the
// caller holds s.mu, and r is live.
func (s *Server) moveLocked(r *registration, addr netip.AddrPort, log zerolog.Logger) {
	if r.addr == addr {
		return
	}
	r.detach()
	r.detach = s.Relay.Attach(r.endpoint, addr)
	log.Info().Str("endpoint", r.endpoint.String()).Str("from", r.addr.String()).Str("to", addr.String()).Msg("node moved")
	r.addr = addr
}

// unregister undoes a registration; the caller holds the connection's
// lock, if the registration has one. A registration that a newer one
// replaced undoes nothing: the relay route is the newer one's, even when
// it came from the same address.
func (s *Server) unregister(r *registration, log zerolog.Logger) {
	s.mu.Lock()
	live := s.dropLocked(r)
	s.mu.Unlock()
	if !live {
		log.Debug().Str("endpoint", r.endpoint.String()).Msg("replaced connection gone")
		return
	}
	s.forget(r)
	log.Info().Str("endpoint", r.endpoint.String()).Msg("node gone")
}

// dropLocked takes r out of the registry and the relay if it is the live
// registration of its endpoint, and reports whether it was; the caller
// holds s.mu.
func (s *Server) dropLocked(r *registration) bool {
	if s.regs[r.endpoint] != r {
		return false
	}
	delete(s.regs, r.endpoint)
	r.detach()
	if r.idleAt != nil {
		s.idle.Remove(r.idleAt)
		r.idleAt = nil
	}
	if r.device {
		s.Stats.Devices.Add(-1)
	}
	return true
}

// forget removes the record of a device whose registration was dropped.
func (s *Server) forget(r *registration) {
	if !r.device {
		return
	}
	// A fresh context: the server's may already be done, and the record
	// must still go.
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if err := s.Presence.Delete(ctx, r.id, Record{Endpoint: r.endpoint}); err != nil {
		s.Stats.Errors.Add(1)
		if !errors.Is(err, ErrUnavailable) {
			s.Log.Error().Err(err).Str("peer", r.id.Short()).Msg("remove presence")
		}
	}
}

func udpAddr(a net.Addr) (netip.AddrPort, bool) {
	ua, ok := a.(*net.UDPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ua.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

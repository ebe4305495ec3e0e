// Package portmap asks the home router for a public UDP port mapping of a
// node's socket and keeps it: PCP (RFC 6887) first, NAT-PMP (RFC 6886)
// when the router speaks only that, UPnP-IGD (ssdp.go, igd.go) when
// neither answers. A peer that sends to the mapped address reaches the
// node even when the router's NAT maps per destination (symmetric), which
// no hole punching gets through from a symmetric peer.
//
// The cost is bounded, for a router that never answers as much as for one
// that does: discovery is at most tries requests per protocol (250 ms,
// 500 ms, 1 s apart), so at most six packets and 3.5 s for PCP and
// NAT-PMP, then as many SSDP searches on the link toward the gateway,
// one hop (nine packets and 5.25 s in all), after which Run returns
// ErrNoService and sends nothing more. An SSDP answer's description and
// control calls are HTTP to the gateway, or the answerer on its link,
// only, each bounded in time and size. A mapping is renewed at half its
// lifetime (two hours asked for), and deleted when Run's context ends.
// Only the gateway can answer PCP and NAT-PMP: the socket is connected to
// it.
//
// What is left out: the gateway's epoch (a router that rebooted and lost
// the mapping gets it back at the next renewal, within half a lifetime),
// and IPv6 (PCP could open an IPv6 pinhole; direct IPv6 paths punch
// through stateful firewalls without it).
package portmap

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// ServerPort is where a gateway's PCP and NAT-PMP server listens.
const ServerPort = 5351

// DefaultLifetime is the mapping lifetime asked for (RFC 6886's
// recommendation).
const DefaultLifetime = 2 * time.Hour

const (
	// tries requests per exchange, the first wait firstWait, doubling.
	tries     = 3
	firstWait = 250 * time.Millisecond
	// minRenew bounds renewals from below, whatever lifetime the router
	// grants.
	minRenew = 2 * time.Second
	// retryEvery is the wait between renewals that got no answer, while
	// the mapping lasts.
	retryEvery = 30 * time.Second
	// deleteWait is how long Run waits for the answer to its deletion.
	deleteWait = 500 * time.Millisecond
)

var (
	// ErrNoService: no PCP, NAT-PMP or UPnP-IGD server answered.
	ErrNoService = errors.New("no PCP, NAT-PMP or UPnP-IGD server answered")
	// ErrExpired: the mapping lapsed because its renewals got no answer.
	ErrExpired = errors.New("port mapping expired unrenewed")

	errResponse           = errors.New("not a response to the request")
	errUnsupportedVersion = errors.New("the gateway does not speak PCP")
)

// ResultError is a refusal: a response with a result code other than
// success (RFC 6887 §7.4, RFC 6886 §3.5).
type ResultError struct {
	Protocol string // "PCP", "NAT-PMP" or "UPnP-IGD" (its errorCode)
	Code     int
}

func (e *ResultError) Error() string {
	return fmt.Sprintf("%s refused the mapping: result code %d", e.Protocol, e.Code)
}

// Config is what Run maps and whom it asks.
type Config struct {
	// Gateway is the server: the default gateway, port ServerPort.
	Gateway netip.AddrPort
	// Port is the local UDP port to map.
	Port uint16
	// Lifetime is asked for; DefaultLifetime if zero.
	Lifetime time.Duration
	// OnMapped, if set, is called from Run with the public address of the
	// mapping when it is granted or changes, and with the zero value when
	// it ends.
	OnMapped func(netip.AddrPort)

	// ssdp is where UPnP-IGD searches are sent: ssdpGroup if zero (tests
	// set a unicast address on loopback).
	ssdp netip.AddrPort
}

// mapper is one protocol's way to ask for, renew and delete a mapping.
type mapper interface {
	request(ctx context.Context, external uint16, lifetime time.Duration) (Mapping, error)
	remove(external uint16)
}

// Mapping is a mapping the gateway granted.
type Mapping struct {
	Protocol string // "PCP", "NAT-PMP" or "UPnP-IGD"
	Addr     netip.AddrPort
	Lifetime time.Duration
}

// client is one Run's state: its socket to the gateway, and the nonce
// that names its PCP mapping.
type client struct {
	conn   *net.UDPConn
	local  netip.Addr // this host's address toward the gateway
	port   uint16
	nonce  [12]byte
	natpmp bool // the gateway speaks only NAT-PMP
	buf    []byte
}

// Run asks the gateway for the mapping and keeps it until ctx ends, then
// deletes it and returns nil. It returns ErrNoService if nothing answers
// discovery, a *ResultError if the gateway refuses, ErrExpired if renewals
// went unanswered for the mapping's lifetime.
func Run(ctx context.Context, cfg Config) error {
	if !cfg.Gateway.IsValid() || cfg.Port == 0 {
		return fmt.Errorf("port mapping: gateway %v, port %d: both are needed", cfg.Gateway, cfg.Port)
	}
	lifetime := cfg.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	notify := func(a netip.AddrPort) {
		if cfg.OnMapped != nil {
			cfg.OnMapped(a)
		}
	}
	c, err := dial(cfg.Gateway, cfg.Port)
	if err != nil {
		return err
	}
	defer c.conn.Close()
	// A blocked read ends when ctx does.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetReadDeadline(time.Now()) })
	defer stop()

	var mp mapper = c
	m, err := c.request(ctx, cfg.Port, lifetime)
	if errors.Is(err, ErrNoService) && ctx.Err() == nil {
		mp, m, err = upnp(ctx, cfg, c.local, lifetime)
	}
	if err != nil {
		return fmt.Errorf("port mapping at %v: %w", cfg.Gateway, err)
	}
	notify(m.Addr)
	expires := time.Now().Add(m.Lifetime)
	renew := max(m.Lifetime/2, minRenew)
	for {
		t := time.NewTimer(renew)
		select {
		case <-ctx.Done():
			t.Stop()
			mp.remove(m.Addr.Port())
			notify(netip.AddrPort{})
			return nil
		case <-t.C:
		}
		next, err := mp.request(ctx, m.Addr.Port(), lifetime)
		switch {
		case ctx.Err() != nil:
			continue // deleted above
		case err == nil:
			if next.Addr != m.Addr {
				notify(next.Addr)
			}
			m = next
			expires = time.Now().Add(m.Lifetime)
			renew = max(m.Lifetime/2, minRenew)
		case time.Now().Add(retryEvery).Before(expires):
			renew = retryEvery
		default:
			notify(netip.AddrPort{})
			return fmt.Errorf("port mapping at %v: %w (last error: %v)", cfg.Gateway, ErrExpired, err)
		}
	}
}

func dial(gw netip.AddrPort, port uint16) (*client, error) {
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(gw))
	if err != nil {
		return nil, fmt.Errorf("port mapping: socket to %v: %w", gw, err)
	}
	c := &client{conn: conn, port: port, buf: make([]byte, pcpMaxLen+4),
		local: conn.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()}
	_, _ = rand.Read(c.nonce[:])
	return c, nil
}

// request asks for (or renews) the mapping, wishing for public port
// external: by PCP unless the gateway showed it speaks only NAT-PMP (or
// gave no PCP answer at all).
func (c *client) request(ctx context.Context, external uint16, lifetime time.Duration) (Mapping, error) {
	secs := uint32(min(lifetime/time.Second, 1<<32-1))
	if !c.natpmp {
		m, err := c.pcp(ctx, external, secs)
		if !errors.Is(err, errUnsupportedVersion) && !errors.Is(err, ErrNoService) {
			return m, err
		}
		if ctx.Err() != nil {
			return Mapping{}, ctx.Err()
		}
	}
	m, err := c.natPMP(ctx, external, secs)
	if err == nil {
		c.natpmp = true
	}
	return m, err
}

func (c *client) pcp(ctx context.Context, external uint16, secs uint32) (Mapping, error) {
	var r pcpMapResponse
	err := c.exchange(ctx, pcpMapRequest(c.local, c.nonce, c.port, external, secs), tries, firstWait, func(b []byte) error {
		var err error
		r, err = pcpParseMap(b)
		if err == nil && (r.nonce != c.nonce || r.internal != c.port) {
			return errResponse // another request's
		}
		return err
	})
	if err != nil {
		return Mapping{}, err
	}
	if r.lifetime == 0 || r.external == 0 || !r.addr.IsValid() || r.addr.IsUnspecified() {
		return Mapping{}, fmt.Errorf("PCP granted %v:%d for %d s: not a mapping", r.addr, r.external, r.lifetime)
	}
	return Mapping{Protocol: "PCP", Addr: netip.AddrPortFrom(r.addr, r.external), Lifetime: time.Duration(r.lifetime) * time.Second}, nil
}

func (c *client) natPMP(ctx context.Context, external uint16, secs uint32) (Mapping, error) {
	var a natpmpAddrResponse
	err := c.exchange(ctx, natpmpAddrRequest(), tries, firstWait, func(b []byte) error {
		var err error
		a, err = natpmpParseAddr(b)
		return err
	})
	if err != nil {
		return Mapping{}, err
	}
	var r natpmpMapResponse
	err = c.exchange(ctx, natpmpMapRequest(c.port, external, secs), tries, firstWait, func(b []byte) error {
		var err error
		r, err = natpmpParseMap(b)
		if err == nil && r.internal != c.port {
			return errResponse
		}
		return err
	})
	if err != nil {
		return Mapping{}, err
	}
	if r.lifetime == 0 || r.external == 0 || a.addr.IsUnspecified() {
		return Mapping{}, fmt.Errorf("NAT-PMP granted %v:%d for %d s: not a mapping", a.addr, r.external, r.lifetime)
	}
	return Mapping{Protocol: "NAT-PMP", Addr: netip.AddrPortFrom(a.addr, r.external), Lifetime: time.Duration(r.lifetime) * time.Second}, nil
}

// remove deletes the mapping: one request, a short wait for the answer
// (a gateway that does not answer lets it expire).
func (c *client) remove(external uint16) {
	_ = c.conn.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*deleteWait)
	defer cancel()
	req := pcpMapRequest(c.local, c.nonce, c.port, external, 0)
	parse := func(b []byte) error {
		_, err := pcpParseMap(b)
		if errors.Is(err, errUnsupportedVersion) {
			return nil
		}
		return err
	}
	if c.natpmp {
		req = natpmpMapRequest(c.port, 0, 0)
		parse = func(b []byte) error { _, err := natpmpParseMap(b); return err }
	}
	_ = c.exchange(ctx, req, 1, deleteWait, parse)
}

// exchange sends req up to n times, waiting first, then twice as long
// each time, for a datagram parse accepts; parse returns errResponse for
// one to ignore. Any other outcome of parse ends the exchange.
func (c *client) exchange(ctx context.Context, req []byte, n int, first time.Duration, parse func([]byte) error) error {
	wait := first
	for range n {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := c.conn.Write(req); err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return ErrNoService // an ICMP port unreachable from the gateway
			}
			return fmt.Errorf("sending to the gateway: %w", err)
		}
		if err := c.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return err
		}
		if ctx.Err() != nil { // AfterFunc may have run before the deadline moved
			return ctx.Err()
		}
		for {
			k, err := c.conn.Read(c.buf)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					return ErrNoService
				}
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					break
				}
				return fmt.Errorf("reading from the gateway: %w", err)
			}
			if err := parse(c.buf[:k]); !errors.Is(err, errResponse) {
				return err
			}
		}
		wait *= 2
	}
	return ErrNoService
}

// upnp finds the gateway's UPnP-IGD service from local, its address
// toward the gateway, and asks it for the mapping.
func upnp(ctx context.Context, cfg Config, local netip.Addr, lifetime time.Duration) (mapper, Mapping, error) {
	group := cfg.ssdp
	if !group.IsValid() {
		group = ssdpGroup
	}
	loc, err := ssdpSearch(ctx, local, cfg.Gateway.Addr().Unmap(), group)
	if err != nil {
		return nil, Mapping{}, err
	}
	g, err := newIGD(ctx, loc, local, cfg.Port)
	if err != nil {
		return nil, Mapping{}, err
	}
	m, err := g.request(ctx, cfg.Port, lifetime)
	return g, m, err
}

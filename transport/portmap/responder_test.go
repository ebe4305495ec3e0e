package portmap

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// responder is a PCP and NAT-PMP server on loopback, written from the
// RFCs for these tests: it grants what is asked for (with its own
// lifetime, if set), and records every request.
type responder struct {
	conn *net.UDPConn
	addr netip.AddrPort

	mode     string // "pcp": both protocols; "natpmp": NAT-PMP only; "silent"; "refuse": result refuseCode
	public   netip.Addr
	lifetime uint32 // granted; 0: what was asked
	// before, if set, returns datagrams sent ahead of each answer (foreign
	// or malformed responses the client must ignore).
	before func(req []byte) [][]byte

	mu       sync.Mutex
	requests [][]byte
	mapped   map[uint16]uint32 // internal port → lifetime of its mapping (0: deleted)
	done     chan struct{}

	ssdp *igdResponder // where run sends UPnP-IGD searches
}

const refuseCode = 2 // NOT_AUTHORIZED in both protocols

// newResponder starts a responder in mode, set up by the setups first.
func newResponder(t *testing.T, mode string, setups ...func(*responder)) *responder {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &responder{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), mode: mode,
		public: netip.MustParseAddr("198.18.7.9"), mapped: map[uint16]uint32{}, done: make(chan struct{})}
	for _, s := range setups {
		s(r)
	}
	go r.serve()
	t.Cleanup(func() { conn.Close(); <-r.done })
	return r
}

func (r *responder) serve() {
	defer close(r.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		req := append([]byte(nil), buf[:n]...)
		r.mu.Lock()
		r.requests = append(r.requests, req)
		mode := r.mode
		r.mu.Unlock()
		if mode == "silent" {
			continue
		}
		resp := r.answer(req)
		if resp == nil {
			continue
		}
		if r.before != nil {
			for _, b := range r.before(req) {
				r.conn.WriteToUDPAddrPort(b, from)
			}
		}
		r.conn.WriteToUDPAddrPort(resp, from)
	}
}

func (r *responder) answer(req []byte) []byte {
	if len(req) < 2 {
		return nil
	}
	r.mu.Lock()
	mode := r.mode
	r.mu.Unlock()
	switch req[0] {
	case 0: // NAT-PMP
		op := req[1]
		resp := []byte{0, 128 + op, 0, 0}
		if mode == "refuse" {
			resp[3] = refuseCode
		}
		resp = binary.BigEndian.AppendUint32(resp, 1234) // epoch
		switch {
		case op == 0 && len(req) == 2:
			a := r.public.As4()
			return append(resp, a[:]...)
		case op == 1 && len(req) == 12:
			internal := binary.BigEndian.Uint16(req[4:6])
			external := binary.BigEndian.Uint16(req[6:8])
			life := r.grant(internal, binary.BigEndian.Uint32(req[8:12]))
			if external == 0 {
				external = internal + 1000
			}
			resp = binary.BigEndian.AppendUint16(resp, internal)
			resp = binary.BigEndian.AppendUint16(resp, external)
			return binary.BigEndian.AppendUint32(resp, life)
		}
		return nil
	case 2: // PCP
		if mode == "natpmp" {
			// RFC 6886 §3.5: unsupported version, in NAT-PMP's format.
			return binary.BigEndian.AppendUint32([]byte{0, 128 + req[1], 0, 1}, 1234)
		}
		if len(req) != pcpMapLen || req[1] != pcpOpMap {
			return nil
		}
		resp := make([]byte, pcpMapLen)
		resp[0], resp[1] = 2, 0x80|pcpOpMap
		if mode == "refuse" {
			resp[3] = refuseCode
		}
		internal := binary.BigEndian.Uint16(req[40:42])
		external := binary.BigEndian.Uint16(req[42:44])
		if external == 0 {
			external = internal + 1000
		}
		binary.BigEndian.PutUint32(resp[4:8], r.grant(internal, binary.BigEndian.Uint32(req[4:8])))
		binary.BigEndian.PutUint32(resp[8:12], 1234)
		copy(resp[24:40], req[24:40]) // nonce, protocol
		binary.BigEndian.PutUint16(resp[40:42], internal)
		binary.BigEndian.PutUint16(resp[42:44], external)
		a := r.public.As16()
		copy(resp[44:60], a[:])
		return resp
	}
	return nil
}

func (r *responder) grant(internal uint16, asked uint32) uint32 {
	life := asked
	if r.lifetime != 0 && asked != 0 {
		life = r.lifetime
	}
	r.mu.Lock()
	r.mapped[internal] = life
	r.mu.Unlock()
	return life
}

func (r *responder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

func (r *responder) mapping(internal uint16) (uint32, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.mapped[internal]
	return l, ok
}

// deleted waits (a second at most) for the mapping of port to be deleted
// and returns it as mapping does: Run may return on an answer to an
// earlier request (a renewal's, late) before its deletion has arrived.
func (r *responder) deleted(t *testing.T, port uint16) (uint32, bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		l, ok := r.mapping(port)
		if (ok && l == 0) || time.Now().After(deadline) {
			return l, ok
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package portmap

// SSDP discovery (UPnP Device Architecture 1.1 §1.3.2): an M-SEARCH
// request in one UDP datagram to the multicast group, answered by unicast
// from each matching device. Only what is needed to find the gateway's
// description:
//
//	M-SEARCH * HTTP/1.1
//	HOST: 239.255.255.250:1900
//	MAN: "ssdp:discover"
//	MX: 1
//	ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1
//
//	HTTP/1.1 200 OK
//	ST: the search target
//	LOCATION: http://<device address>:<port>/<root device description>
//	(other headers, ignored)
//
// An IGD:2 device answers a search for IGD:1 as well (UDA 1.1 §1.3.2), so
// one search target finds both.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// ssdpGroup is SSDP's multicast address and port.
var ssdpGroup = netip.MustParseAddrPort("239.255.255.250:1900")

const (
	ssdpTarget = "urn:schemas-upnp-org:device:InternetGatewayDevice:1"
	// ssdpMaxLen bounds an answer read; a longer datagram is cut and
	// then most likely fails to parse.
	ssdpMaxLen = 2048
)

var ssdpRequest = []byte("M-SEARCH * HTTP/1.1\r\n" +
	"HOST: 239.255.255.250:1900\r\n" +
	"MAN: \"ssdp:discover\"\r\n" +
	"MX: 1\r\n" +
	"ST: " + ssdpTarget + "\r\n\r\n")

// errForeignLocation: an SSDP answer named a description on a host that
// is neither the gateway nor the answerer.
var errForeignLocation = errors.New("description on another host")

// ssdpSearch sends up to tries M-SEARCHes from local (this host's address
// toward gw) to group, firstWait apart and doubling, and returns the
// description URL of the first answer that is the gateway, or a host on
// local's link that names its own address. A group that is multicast is
// sent to on local's interface only, one hop.
func ssdpSearch(ctx context.Context, local, gw netip.Addr, group netip.AddrPort) (*url.URL, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: local.AsSlice()})
	if err != nil {
		return nil, fmt.Errorf("SSDP: socket on %v: %w", local, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Now()) })
	defer stop()
	var link netip.Prefix
	if group.Addr().IsMulticast() {
		ifi, prefix, err := interfaceOf(local)
		if err != nil {
			return nil, err
		}
		link = prefix
		pc := ipv4.NewPacketConn(conn)
		if err := pc.SetMulticastInterface(ifi); err != nil {
			return nil, fmt.Errorf("SSDP: multicast on %s: %w", ifi.Name, err)
		}
		_ = pc.SetMulticastTTL(1)
		_ = pc.SetMulticastLoopback(false)
	}
	dst := net.UDPAddrFromAddrPort(group)
	buf := make([]byte, ssdpMaxLen)
	wait := firstWait
	var lastErr error
	for range tries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := conn.WriteToUDP(ssdpRequest, dst); err != nil {
			return nil, fmt.Errorf("SSDP: sending the search: %w", err)
		}
		if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					break
				}
				if errors.Is(err, syscall.ECONNREFUSED) {
					continue // a unicast group with nobody listening
				}
				return nil, fmt.Errorf("SSDP: reading answers: %w", err)
			}
			src := from.Addr().Unmap()
			if src != gw && !(link.IsValid() && link.Contains(src)) && !(!link.IsValid() && src == group.Addr()) {
				continue // not from the home network
			}
			u, err := ssdpParse(buf[:n], src, gw)
			if err != nil {
				lastErr = err
				continue
			}
			return u, nil
		}
		wait *= 2
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w (SSDP: %v)", ErrNoService, lastErr)
	}
	return nil, ErrNoService
}

// ssdpParse reads an answer from src: a 200 for our search target whose
// LOCATION is an http URL on src or gw, by address.
func ssdpParse(b []byte, src, gw netip.Addr) (*url.URL, error) {
	r := bufio.NewReader(bytes.NewReader(b))
	resp, err := http.ReadResponse(r, nil)
	if err != nil {
		return nil, fmt.Errorf("answer from %v: %w", src, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.EqualFold(resp.Header.Get("ST"), ssdpTarget) {
		return nil, fmt.Errorf("answer from %v: %s for %q", src, resp.Status, resp.Header.Get("ST"))
	}
	u, err := url.Parse(resp.Header.Get("LOCATION"))
	if err != nil {
		return nil, fmt.Errorf("answer from %v: LOCATION: %w", src, err)
	}
	if err := allowedURL(u, src, gw); err != nil {
		return nil, fmt.Errorf("answer from %v: %w", src, err)
	}
	return u, nil
}

// allowedURL accepts an http URL whose host is the address a or b.
func allowedURL(u *url.URL, a, b netip.Addr) error {
	if u.Scheme != "http" || u.User != nil {
		return fmt.Errorf("%w: %q is not a plain http URL", errForeignLocation, u.Redacted())
	}
	h, err := netip.ParseAddr(u.Hostname())
	if err != nil || (h.Unmap() != a && h.Unmap() != b) {
		return fmt.Errorf("%w: %q is on neither %v nor %v", errForeignLocation, u.Redacted(), a, b)
	}
	return nil
}

// interfaceOf returns the interface that has address a, and a's prefix
// there.
func interfaceOf(a netip.Addr) (*net.Interface, netip.Prefix, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, netip.Prefix{}, fmt.Errorf("SSDP: listing interfaces: %w", err)
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			n, ok := ad.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(n.IP)
			ones, _ := n.Mask.Size()
			if ok && ip.Unmap() == a {
				return &ifs[i], netip.PrefixFrom(a, ones).Masked(), nil
			}
		}
	}
	return nil, netip.Prefix{}, fmt.Errorf("SSDP: no interface has %v", a)
}

package portmap

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// FuzzParseResponse feeds any datagram to the three response parsers:
// none panics, each either accepts or says why not, and what PCP accepts
// is a well-formed MAP response that reads back the same.
func FuzzParseResponse(f *testing.F) {
	var nonce [12]byte
	req := pcpMapRequest(netip.MustParseAddr("10.1.0.2"), nonce, 4000, 4000, 7200)
	resp := append([]byte(nil), req...)
	resp[1] |= pcpReplyBit
	f.Add(resp)
	f.Add([]byte{0, 128, 0, 0, 0, 0, 4, 210, 198, 18, 7, 9})
	f.Add([]byte{0, 129, 0, 0, 0, 0, 4, 210, 15, 160, 15, 160, 0, 0, 28, 32})
	f.Add([]byte{0, 129, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{2, 0x81, 0, 8})
	f.Fuzz(func(t *testing.T, b []byte) {
		in := append([]byte(nil), b...)
		r, err := pcpParseMap(b)
		var re *ResultError
		switch {
		case err == nil:
			if len(b) < pcpMapLen || len(b) > pcpMaxLen || b[0] != pcpVersion || b[1] != pcpReplyBit|pcpOpMap || b[3] != 0 {
				t.Fatalf("PCP accepted %x", b)
			}
			if r.internal != binary.BigEndian.Uint16(b[40:42]) || r.external != binary.BigEndian.Uint16(b[42:44]) ||
				r.addr != netip.AddrFrom16([16]byte(b[44:60])).Unmap() || r.nonce != [12]byte(b[24:36]) {
				t.Fatalf("PCP read %+v from %x", r, b)
			}
		case errors.As(err, &re):
			if re.Code == 0 {
				t.Fatalf("result error with code 0 from %x", b)
			}
		case errors.Is(err, errResponse), errors.Is(err, errUnsupportedVersion):
		default:
			t.Fatalf("PCP: unexpected error %v", err)
		}
		if a, err := natpmpParseAddr(b); err == nil && (len(b) < 12 || !a.addr.Is4()) {
			t.Fatalf("NAT-PMP address accepted %x as %+v", b, a)
		}
		if m, err := natpmpParseMap(b); err == nil && (len(b) < 16 || m.internal != binary.BigEndian.Uint16(b[8:10])) {
			t.Fatalf("NAT-PMP map accepted %x as %+v", b, m)
		}
		if string(in) != string(b) {
			t.Fatal("a parser wrote to its input")
		}
	})
}

// FuzzParseUPnP feeds any bytes to what a host on the LAN can send the
// UPnP-IGD client: an SSDP answer (accepted only with an http LOCATION on
// the answerer or the gateway), a description and a SOAP response.
func FuzzParseUPnP(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nST: " + ssdpTarget + "\r\nLOCATION: http://10.1.0.1:5000/rootDesc.xml\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\r\nST: " + ssdpTarget + "\r\nLOCATION: http://10.9.9.9:5000/\r\n\r\n"))
	f.Add([]byte(`<root><URLBase>http://10.1.0.1:5000/</URLBase><device><deviceList><device><serviceList><service>` +
		`<serviceType>urn:schemas-upnp-org:service:WANIPConnection:2</serviceType><controlURL>/ctl</controlURL></service>` +
		`</serviceList></device></deviceList></device></root>`))
	f.Add([]byte(`<s:Envelope><s:Body><s:Fault><detail><UPnPError><errorCode>718</errorCode></UPnPError></detail></s:Fault></s:Body></s:Envelope>`))
	src, gw := netip.MustParseAddr("10.1.0.7"), netip.MustParseAddr("10.1.0.1")
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, err := ssdpParse(b, src, gw); err == nil {
			h, herr := netip.ParseAddr(u.Hostname())
			if u.Scheme != "http" || herr != nil || (h.Unmap() != src && h.Unmap() != gw) {
				t.Fatalf("SSDP answer %q accepted with LOCATION %v", b, u)
			}
		}
		if svc, ctl, _, err := parseDescription(b); err == nil && (svc == "" || ctl == "") {
			t.Fatalf("description %q gave service %q, control %q", b, svc, ctl)
		}
		_, _ = soapValues(b)
	})
}

package portmap

// UPnP-IGD's port mapping, after SSDP found the gateway's root device
// description (ssdp.go): HTTP GET of the description, then SOAP 1.1 calls
// to the control URL of its WANIPConnection (v1 or v2) or WANPPPConnection
// service. Every HTTP exchange is bounded: reqTimeout, responses cut at
// descMaxLen and soapMaxLen, no redirects, and connections only to the
// host the description was found on (the gateway, or the SSDP answerer on
// its link) — a URL in a description that names another host is refused.
//
//	description (GET LOCATION), the parts read:
//	  <root><URLBase>?</URLBase><device> … <serviceList><service>
//	    <serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
//	    <controlURL>/ctl/IPConn</controlURL>
//	  </service></serviceList><deviceList><device>…</device></deviceList></device></root>
//
//	request (POST controlURL)
//	  SOAPAction: "<serviceType>#<action>"
//	  <s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"
//	      s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>
//	    <u:<action> xmlns:u="<serviceType>"><Arg>value</Arg>…</u:<action>>
//	  </s:Body></s:Envelope>
//
//	response: 200 and <u:<action>Response> with the out arguments, or 500
//	and a SOAP fault whose <UPnPError><errorCode> is the refusal.
//
// The actions: GetExternalIPAddress → NewExternalIPAddress;
// AddPortMapping (NewRemoteHost "", NewExternalPort, NewProtocol UDP,
// NewInternalPort, NewInternalClient, NewEnabled 1,
// NewPortMappingDescription, NewLeaseDuration seconds);
// AddAnyPortMapping (v2, the same in, NewReservedPort out) when the port
// is taken; DeletePortMapping (NewRemoteHost, NewExternalPort,
// NewProtocol).

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const (
	descMaxLen = 64 << 10
	soapMaxLen = 16 << 10
	reqTimeout = 2 * time.Second

	upnpMappingName = "tunnel"

	// UPnP-IGD error codes (WANIPConnection:2 §2.4.16) acted on.
	upnpConflict      = 718 // ConflictInMappingEntry
	upnpOnlyPermanent = 725 // OnlyPermanentLeasesSupported
)

var errTooLarge = errors.New("response too large")

// igd is a gateway's connection service found by its description.
type igd struct {
	hc           *http.Client
	control      *url.URL
	service      string // its serviceType
	local        netip.Addr
	port         uint16
	permanent    bool // the gateway grants only leases of 0 (no expiry)
	v2           bool
	lastExternal uint16
}

// newIGD fetches the description at loc and finds the connection service.
// Connections go only to loc's host.
func newIGD(ctx context.Context, loc *url.URL, local netip.Addr, port uint16) (*igd, error) {
	host, _ := netip.ParseAddr(loc.Hostname()) // checked by ssdpParse
	host = host.Unmap()
	d := &net.Dialer{Timeout: reqTimeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil || ap.Addr().Unmap() != host {
				return nil, fmt.Errorf("%w: %s", errForeignLocation, addr)
			}
			return d.DialContext(ctx, network, addr)
		},
		Proxy:                  nil,
		DisableKeepAlives:      true, // nothing idle (and no goroutine) outlives a call
		ResponseHeaderTimeout:  reqTimeout,
		MaxResponseHeaderBytes: 8 << 10,
	}
	g := &igd{
		hc: &http.Client{Transport: tr, Timeout: reqTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		local: local, port: port,
	}
	body, status, err := g.do(ctx, http.MethodGet, loc, nil, nil, descMaxLen)
	if err != nil {
		return nil, fmt.Errorf("UPnP description %s: %w", loc.Redacted(), err)
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("UPnP description %s: HTTP status %d", loc.Redacted(), status)
	}
	svc, ctl, base, err := parseDescription(body)
	if err != nil {
		return nil, fmt.Errorf("UPnP description %s: %w", loc.Redacted(), err)
	}
	ref := loc
	if base != "" {
		if ref, err = url.Parse(base); err != nil {
			return nil, fmt.Errorf("UPnP description %s: URLBase: %w", loc.Redacted(), err)
		}
	}
	u, err := url.Parse(ctl)
	if err != nil {
		return nil, fmt.Errorf("UPnP description %s: controlURL: %w", loc.Redacted(), err)
	}
	g.control = loc.ResolveReference(ref).ResolveReference(u)
	if err := allowedURL(g.control, host, host); err != nil {
		return nil, fmt.Errorf("UPnP description %s: controlURL: %w", loc.Redacted(), err)
	}
	g.service = svc
	g.v2 = strings.HasSuffix(svc, ":2")
	return g, nil
}

type upnpDevice struct {
	Services []struct {
		Type    string `xml:"serviceType"`
		Control string `xml:"controlURL"`
	} `xml:"serviceList>service"`
	Devices []upnpDevice `xml:"deviceList>device"`
}

// parseDescription returns the first WANIPConnection service (either
// version), else the first WANPPPConnection, its control URL and the
// description's URLBase.
func parseDescription(b []byte) (service, control, base string, err error) {
	var root struct {
		URLBase string     `xml:"URLBase"`
		Device  upnpDevice `xml:"device"`
	}
	if err := xml.Unmarshal(b, &root); err != nil {
		return "", "", "", fmt.Errorf("parsing: %w", err)
	}
	var ppp [2]string
	var walk func(d *upnpDevice, depth int) bool
	walk = func(d *upnpDevice, depth int) bool {
		for _, s := range d.Services {
			t := strings.TrimSpace(s.Type)
			switch {
			case t == "urn:schemas-upnp-org:service:WANIPConnection:1" || t == "urn:schemas-upnp-org:service:WANIPConnection:2":
				service, control = t, strings.TrimSpace(s.Control)
				return true
			case t == "urn:schemas-upnp-org:service:WANPPPConnection:1" && ppp[0] == "":
				ppp = [2]string{t, strings.TrimSpace(s.Control)}
			}
		}
		for i := range d.Devices {
			if depth < 8 && walk(&d.Devices[i], depth+1) {
				return true
			}
		}
		return false
	}
	if !walk(&root.Device, 0) {
		service, control = ppp[0], ppp[1]
	}
	if service == "" || control == "" {
		return "", "", "", errors.New("no WANIPConnection or WANPPPConnection service")
	}
	return service, control, strings.TrimSpace(root.URLBase), nil
}

// request maps (or renews) the node's port, wishing for public port
// external. Mapping.Lifetime is the lease, or DefaultLifetime for a
// permanent one (renewed all the same: a gateway that rebooted gets it
// back).
func (g *igd) request(ctx context.Context, external uint16, lifetime time.Duration) (Mapping, error) {
	out, err := g.call(ctx, "GetExternalIPAddress", nil)
	if err != nil {
		return Mapping{}, err
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(out["NewExternalIPAddress"]))
	if err != nil || !ip.Is4() || ip.IsUnspecified() {
		return Mapping{}, fmt.Errorf("UPnP external address %q: not an IPv4 address", out["NewExternalIPAddress"])
	}
	secs := uint32(min(lifetime/time.Second, 1<<31-1))
	if g.permanent {
		secs = 0
	}
	_, err = g.call(ctx, "AddPortMapping", g.mapArgs(external, secs))
	var re *ResultError
	if errors.As(err, &re) && re.Code == upnpOnlyPermanent && secs != 0 {
		g.permanent, secs = true, 0
		_, err = g.call(ctx, "AddPortMapping", g.mapArgs(external, secs))
	}
	if errors.As(err, &re) && re.Code == upnpConflict && g.v2 {
		out, err = g.call(ctx, "AddAnyPortMapping", g.mapArgs(external, secs))
		if err == nil {
			p, perr := strconv.ParseUint(strings.TrimSpace(out["NewReservedPort"]), 10, 16)
			if perr != nil || p == 0 {
				return Mapping{}, fmt.Errorf("UPnP AddAnyPortMapping: reserved port %q", out["NewReservedPort"])
			}
			external = uint16(p)
		}
	}
	if err != nil {
		return Mapping{}, err
	}
	g.lastExternal = external
	life := time.Duration(secs) * time.Second
	if secs == 0 {
		life = DefaultLifetime
	}
	return Mapping{Protocol: "UPnP-IGD", Addr: netip.AddrPortFrom(ip, external), Lifetime: life}, nil
}

func (g *igd) mapArgs(external uint16, secs uint32) [][2]string {
	return [][2]string{
		{"NewRemoteHost", ""},
		{"NewExternalPort", strconv.Itoa(int(external))},
		{"NewProtocol", "UDP"},
		{"NewInternalPort", strconv.Itoa(int(g.port))},
		{"NewInternalClient", g.local.String()},
		{"NewEnabled", "1"},
		{"NewPortMappingDescription", upnpMappingName},
		{"NewLeaseDuration", strconv.FormatUint(uint64(secs), 10)},
	}
}

// remove deletes the mapping, waiting for the answer no longer than
// reqTimeout.
func (g *igd) remove(external uint16) {
	ctx, cancel := context.WithTimeout(context.Background(), reqTimeout)
	defer cancel()
	_, _ = g.call(ctx, "DeletePortMapping", [][2]string{
		{"NewRemoteHost", ""},
		{"NewExternalPort", strconv.Itoa(int(external))},
		{"NewProtocol", "UDP"},
	})
}

// call runs a SOAP action and returns its out arguments by name; a fault
// is a *ResultError with the UPnP error code.
func (g *igd) call(ctx context.Context, action string, args [][2]string) (map[string]string, error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:`)
	b.WriteString(action)
	b.WriteString(` xmlns:u="`)
	_ = xml.EscapeText(&b, []byte(g.service))
	b.WriteString(`">`)
	for _, a := range args {
		fmt.Fprintf(&b, "<%s>", a[0])
		_ = xml.EscapeText(&b, []byte(a[1]))
		fmt.Fprintf(&b, "</%s>", a[0])
	}
	fmt.Fprintf(&b, "</u:%s></s:Body></s:Envelope>", action)
	hdr := http.Header{
		"Content-Type": {`text/xml; charset="utf-8"`},
		"SOAPAction":   {`"` + g.service + "#" + action + `"`},
	}
	body, status, err := g.do(ctx, http.MethodPost, g.control, hdr, b.Bytes(), soapMaxLen)
	if err != nil {
		return nil, fmt.Errorf("UPnP %s: %w", action, err)
	}
	out, err := soapValues(body)
	if err != nil {
		return nil, fmt.Errorf("UPnP %s (HTTP status %d): %w", action, status, err)
	}
	if code, ok := out["errorCode"]; ok || status != http.StatusOK {
		n, _ := strconv.Atoi(strings.TrimSpace(code))
		return nil, fmt.Errorf("UPnP %s (HTTP status %d, %q): %w", action, status, out["errorDescription"],
			&ResultError{Protocol: "UPnP-IGD", Code: n})
	}
	return out, nil
}

// soapValues collects the text of an envelope's leaf elements by local
// name: the out arguments, or a fault's errorCode and errorDescription.
func soapValues(b []byte) (map[string]string, error) {
	out := map[string]string{}
	dec := xml.NewDecoder(bytes.NewReader(b))
	var name string
	var text strings.Builder
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("parsing the SOAP response: %w", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			name = tok.Name.Local
			text.Reset()
		case xml.CharData:
			text.Write(tok)
		case xml.EndElement:
			if name == tok.Name.Local {
				out[name] = text.String()
			}
			name = ""
		}
	}
}

// do runs one HTTP request to the gateway and reads at most max bytes of
// the response.
func (g *igd) do(ctx context.Context, method string, u *url.URL, hdr http.Header, body []byte, max int) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, reqTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := g.hc.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > int64(max) {
		return nil, resp.StatusCode, fmt.Errorf("%w: %d bytes, at most %d read", errTooLarge, resp.ContentLength, max)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(max)+1))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("reading the response: %w", err)
	}
	if len(b) > max {
		return nil, resp.StatusCode, fmt.Errorf("%w: over %d bytes", errTooLarge, max)
	}
	return b, resp.StatusCode, nil
}

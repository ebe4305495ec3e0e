package portmap

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// igdResponder is a UPnP-IGD gateway on loopback, written from the UPnP
// specifications for these tests: an SSDP answerer (unicast: the client
// under test sends its searches here instead of to the group), a root
// device description and a SOAP control URL over real HTTP. It records
// every search and every call.
type igdResponder struct {
	ssdp     *net.UDPConn
	ssdpAddr netip.AddrPort
	http     *httptest.Server
	done     chan struct{}

	// Set up before start:
	service   string // serviceType; WANIPConnection:1 by default
	location  string // LOCATION sent; the description's URL by default
	silent    bool   // no SSDP answers
	desc      []byte // the description; one naming service by default
	permanent bool   // only leases of 0 (error 725 otherwise)
	taken     bool   // every AddPortMapping conflicts (error 718)
	public    string
	huge      bool // the description is 64 MiB of chunked padding
	stall     bool // the description never comes (until the client hangs up)

	written int64 // bytes of the description written (huge)

	mu       sync.Mutex
	searches int
	fetches  int               // of the description
	calls    []string          // action names, in order
	leases   map[string]string // external port → lease of its mapping (deleted: removed)
	deleted  []string          // external ports deleted
	last     map[string]string // the last call's arguments
}

func newIGDResponder(t *testing.T, setups ...func(*igdResponder)) *igdResponder {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	r := &igdResponder{ssdp: conn, ssdpAddr: conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		service: "urn:schemas-upnp-org:service:WANIPConnection:1", public: "198.18.7.9",
		leases: map[string]string{}, done: make(chan struct{})}
	r.http = httptest.NewServer(http.HandlerFunc(r.serveHTTP))
	for _, s := range setups {
		s(r)
	}
	if r.location == "" {
		r.location = r.http.URL + "/rootDesc.xml"
	}
	if r.desc == nil {
		r.desc = []byte(`<?xml version="1.0"?><root xmlns="urn:schemas-upnp-org:device-1-0"><device>
<deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><controlURL>/ctl/L3F</controlURL></service></serviceList>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType>
<serviceList><service><serviceType>` + r.service + `</serviceType><controlURL>/ctl/IPConn</controlURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>`)
	}
	go r.serveSSDP()
	t.Cleanup(func() { conn.Close(); <-r.done; r.http.Close() })
	return r
}

func (r *igdResponder) serveSSDP() {
	defer close(r.done)
	buf := make([]byte, 2048)
	for {
		n, from, err := r.ssdp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.searches++
		r.mu.Unlock()
		if r.silent || !bytes.HasPrefix(buf[:n], []byte("M-SEARCH * HTTP/1.1\r\n")) ||
			!bytes.Contains(buf[:n], []byte("\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n")) {
			continue
		}
		resp := "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nEXT:\r\n" +
			"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
			"USN: uuid:6c0b7d9e-3f1a-4e2b-9c8d-7a6b5c4d3e2f::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
			"LOCATION: " + r.location + "\r\n\r\n"
		r.ssdp.WriteToUDPAddrPort([]byte(resp), from)
	}
}

func (r *igdResponder) serveHTTP(w http.ResponseWriter, req *http.Request) {
	switch req.URL.Path {
	case "/rootDesc.xml":
		r.mu.Lock()
		r.fetches++
		r.mu.Unlock()
		w.Header().Set("Content-Type", "text/xml")
		if r.stall {
			<-req.Context().Done()
			return
		}
		if r.huge {
			pad := bytes.Repeat([]byte("<device></device>"), 4096)
			for range (64 << 20) / len(pad) {
				n, err := w.Write(pad)
				r.mu.Lock()
				r.written += int64(n)
				r.mu.Unlock()
				if err != nil {
					return
				}
			}
			return
		}
		w.Write(r.desc)
		return
	case "/ctl/IPConn":
	default:
		http.NotFound(w, req)
		return
	}
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<16))
	action, ok := strings.CutPrefix(strings.Trim(req.Header.Get("SOAPAction"), `"`), r.service+"#")
	args, err := soapValues(body)
	if req.Method != http.MethodPost || !ok || err != nil {
		r.fault(w, 401, "Invalid Action")
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, action)
	r.last = args
	out := map[string]string{}
	switch action {
	case "GetExternalIPAddress":
		out["NewExternalIPAddress"] = r.public
	case "AddPortMapping", "AddAnyPortMapping":
		if args["NewProtocol"] != "UDP" || args["NewInternalClient"] != "127.0.0.1" || args["NewRemoteHost"] != "" {
			r.fault(w, 402, "Invalid Args")
			return
		}
		if r.permanent && args["NewLeaseDuration"] != "0" {
			r.fault(w, upnpOnlyPermanent, "OnlyPermanentLeasesSupported")
			return
		}
		port := args["NewExternalPort"]
		if action == "AddPortMapping" && r.taken {
			r.fault(w, upnpConflict, "ConflictInMappingEntry")
			return
		}
		if action == "AddAnyPortMapping" {
			p, _ := strconv.Atoi(port)
			port = strconv.Itoa(p + 1000)
			out["NewReservedPort"] = port
		}
		r.leases[port] = args["NewLeaseDuration"]
	case "DeletePortMapping":
		delete(r.leases, args["NewExternalPort"])
		r.deleted = append(r.deleted, args["NewExternalPort"])
	default:
		r.fault(w, 401, "Invalid Action")
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><u:%sResponse xmlns:u="%s">`, action, r.service)
	for k, v := range out {
		fmt.Fprintf(&b, "<%s>", k)
		xml.EscapeText(&b, []byte(v))
		fmt.Fprintf(&b, "</%s>", k)
	}
	fmt.Fprintf(&b, "</u:%sResponse></s:Body></s:Envelope>", action)
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	io.WriteString(w, b.String())
}

func (r *igdResponder) fault(w http.ResponseWriter, code int, desc string) {
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>%s</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`, code, desc)
}

func (r *igdResponder) state() (searches int, calls []string, leases map[string]string, deleted []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := map[string]string{}
	for k, v := range r.leases {
		l[k] = v
	}
	return r.searches, append([]string(nil), r.calls...), l, append([]string(nil), r.deleted...)
}

// closedPort returns a loopback UDP address nothing listens on: PCP and
// NAT-PMP get port unreachable there, as from a gateway without them.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return a
}

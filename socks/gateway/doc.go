// Package gateway is the public gateway: a shared SOCKS5 and HTTP(S) front
// door to devices that anyone may use without installing anything (like
// Diode's diode.link:1080). It dials devices with its own key (KeyFile,
// gateway.key in its home, never the home's node.key), so a device sees
// the gateway's ID as the client and its policy lets it reach only ports
// published -public; private and protected ports answer "denied" (SOCKS
// 0x02, HTTP 403).
//
//   - SOCKS (SOCKS, on socks.Server): CONNECT to <id>.tunnel:PORT. Any other
//     host — another name, an IP literal, even one sent as a name — is
//     dialer.ErrNotTunnel (0x02). There is no fallback.
//   - HTTP(S) (HTTP, on httputil.ReverseProxy): routed by Host (ParseHost):
//     <id>.DOMAIN is the device's port 80, <id>-<port>.DOMAIN that port;
//     one stream per request; HTTPS with a wildcard certificate for
//     *.DOMAIN the caller loads.
//
// It is a target, so these hold whatever strangers send:
//
//   - Never an open proxy: every stream goes to a device through Dialer,
//     never to an address a client chose; HTTP CONNECT and absolute-form
//     requests for other hosts are refused.
//   - It never presents a fleet credential (its Dialer must have none):
//     otherwise strangers would inherit its memberships.
//   - Budgets per source address (Limiter: new streams per second with a
//     burst, open streams, open HTTP connections; IPv4 per address, IPv6
//     per /64), keyed by the TCP peer, never by X-Forwarded-For, and an
//     overall cap. Over budget a client gets SOCKS 0x02 or HTTP 429 with
//     Retry-After, other sources are unaffected, and refusals are logged at
//     most once per source per 10 s. Near the overall cap, sources holding
//     more than their share are refused first, so a newcomer still gets in
//     while a few hundred sources sit on all they can hold. Per-source
//     state is bounded (at most max(65536, 2*MaxTotal) sources; past that,
//     new sources share one budget) and idle state is forgotten a few
//     entries per call, never by a sweep of the whole table.
//   - Every wait is bounded: device dials by DialTimeout (10 s), a device's
//     response headers by ResponseHeaderTimeout (30 s), a client's
//     handshake or request headers by 10 s, idle HTTP keep-alive by 60 s.
//     Established streams may idle as long as they like.
//   - Errors are fast and plain: small HTML or text pages, never a Go
//     panic page or stack; a handler panic becomes a 500 page or an
//     aborted response.
//   - Shutdown: ending the context given to Serve aborts everything, and
//     Serve returns only once every connection, request and dial it
//     started has ended.
package gateway

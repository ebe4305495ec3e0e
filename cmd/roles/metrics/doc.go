// Package metrics exposes a tunnel process's counters to Prometheus: the
// role's parts keep plain atomic counters (registry.Stats, peer.Stats,
// dialer.Stats, the limits' refusal counts, …) and a Collector reads them
// when /metrics is scraped, so the packet and stream paths pay one atomic
// add, never a label lookup. Server serves one process's Registry: those
// series, the Go runtime's (go_*) and the process's (process_*), in
// Prometheus's text format (exposition.go), written here rather than with
// Prometheus's client library, whose package inits and size cost every
// process ~2 MiB of resident memory whether metrics are on or not.
//
// The series, every label value from a fixed set (no ID, no address):
//
//	tunnel_relay_devices                          gauge: devices registered at this rendezvous node
//	tunnel_relay_connections                      gauge: outer connections open there (leased devices hold none)
//	tunnel_relay_lookups_total{result}            found, redirected, not_found, busy, unavailable, bad_request, error
//	tunnel_relay_forwarded_bytes_total            relay frame bytes forwarded between nodes
//	tunnel_registry_errors_total                  failures of the presence backend (Redis)
//	tunnel_streams_total{side,outcome}            side client (socksd, gateway: the dialer) or device (publish);
//	                                              outcome ok, denied, not_published, refused, timeout, aborted,
//	                                              and on the client also offline, malformed_name, not_tunnel,
//	                                              registry_unavailable, no_direct_path, failed, …; on the device
//	                                              also not_ssh, bad_request, client_gone
//	tunnel_stream_bytes_total{side,direction}     direction up (client to device service) or down
//	tunnel_peers{path}                            end-to-end connections now, path direct or relayed
//	tunnel_gateway_requests_total{code}           the gateway's HTTP(S) answers by status ("none": aborted first)
//	tunnel_limited_total{what}                    refusals by the cap that refused (LimitNames)
//
// A stream is counted once, when its outcome is known: a refusal when it
// is answered, an opened stream when it ends (ok, or aborted if either
// side broke it off).
//
// Invariants: a Server answers only on the address it was given, loopback
// unless allowed otherwise, and bounds what a client can hold: a few
// connections at a time, header bytes and time, one scrape at a time.
package metrics

// Package resolver turns .tunnel names into reachable devices: it parses
// names, runs the registry a rendezvous node keeps (server side), and lets a
// node register itself and look others up (client side). Presence — which
// device is online, at which endpoint — is kept behind the Presence
// interface so that a node can keep it in memory or share it.
package resolver

package transport

import "net/netip"

// A node whose home relay runs in its own process: socksd's embedded
// rendezvous node. The node reaches it over loopback, so by its home
// address alone it is loopback scoped (disco.go, "Scope") and would offer
// peers only loopback candidates. That is right when the relay listens on
// loopback (`make run`: only nodes of this machine can register), wrong
// when it listens on all addresses or on a LAN one (`socksd
// --relay-listen 0.0.0.0:7443`): then devices on other machines register
// too, and they can reach this node at its interfaces' addresses with its
// socket's port, exactly as they reach the relay itself.
//
// The relay's view of this node is no help to them: it saw the node at
// 127.0.0.1. Rather than have the registry make up an address for a node
// attached over loopback, the node, which shares the relay's host and so
// its interfaces, offers them itself; what the relay observed stays what
// it observed (hardnat.go reads the node's NAT from it).

// SetLocalRelay tells the node that the relay listening on listen runs in
// this process. While the node's home relay is that relay reached over
// loopback, and listen is not a loopback address, the node offers its
// interfaces' addresses to peers as well as loopback ones. Its scope is
// unchanged: loopback stays in it for peers on this machine, and what it
// admits beyond loopback is what any node admits.
func (n *Node) SetLocalRelay(listen netip.AddrPort) {
	listen = netip.AddrPortFrom(listen.Addr().Unmap(), listen.Port())
	n.localRelay.Store(&listen)
}

// relayServesBeyondLoopback reports whether the node's home relay is on
// loopback but serves other machines too: the relay of this process
// (SetLocalRelay), listening beyond loopback.
func (n *Node) relayServesBeyondLoopback() bool {
	l := n.localRelay.Load()
	if l == nil || !l.Addr().IsValid() || l.Addr().IsLoopback() {
		return false
	}
	home := n.routes.Load().home
	return !home.IsZero() && home.Addr.Addr().IsLoopback() && home.Addr.Port() == l.Port()
}

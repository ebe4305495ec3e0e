package gateway

import "github.com/tunnel-dev/tunnel/peer/identity"

// KeyFile is the gateway's own key inside its home, kept beside node.key
// and never instead of it. A gateway dials devices for strangers, and a
// device lets in whoever holds a key its policy lists: a gateway dialing
// with the node key of a person's home (a laptop listed in -private, a
// fleet member) would lend that person's identity to everyone. Its own
// key is listed nowhere, so only -public ports answer it.
const KeyFile = "gateway.key"

// LoadOrCreateKey reads the gateway's key in home, creating it (an
// OpenSSH private key, mode 0600, in a home made 0700) on first use, as
// identity.LoadOrCreate does node.key.
func LoadOrCreateKey(home string) (*identity.Key, error) {
	return identity.LoadOrCreateFile(home, KeyFile)
}

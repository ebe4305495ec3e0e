package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
)

// KeyFile is the name of the node key inside a home directory. It is an
// OpenSSH private key, so `ssh-keygen -y -f` can read it.
const KeyFile = "node.key"

// Key is a node's private key and the ID it proves.
type Key struct {
	priv ed25519.PrivateKey
	id   ID
}

// Generate makes a fresh key.
func Generate() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	return FromPrivateKey(priv), nil
}

// FromPrivateKey wraps an existing Ed25519 key.
func FromPrivateKey(priv ed25519.PrivateKey) *Key {
	k := &Key{priv: priv}
	copy(k.id[:], priv.Public().(ed25519.PublicKey))
	return k
}

// ID returns the node's ID.
func (k *Key) ID() ID { return k.id }

// PrivateKey returns the Ed25519 private key (for TLS certificates and signing).
func (k *Key) PrivateKey() ed25519.PrivateKey { return k.priv }

// Load reads the key in dir. A missing file is reported with fs.ErrNotExist.
func Load(dir string) (*Key, error) {
	path := filepath.Join(dir, KeyFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity %s: %w", path, err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse identity %s: %w (the file is not an OpenSSH Ed25519 private key; move it aside to create a new identity)", path, err)
	}
	var priv ed25519.PrivateKey
	switch p := raw.(type) {
	case *ed25519.PrivateKey:
		priv = *p
	case ed25519.PrivateKey:
		priv = p
	default:
		return nil, fmt.Errorf("parse identity %s: key is %T, want Ed25519", path, raw)
	}
	return FromPrivateKey(priv), nil
}

// LoadOrCreate reads the key in dir, creating dir (0700) and a new key file
// (0600) if there is none. An existing file that cannot be read or parsed is
// an error and is never overwritten: it may be the only copy of an identity.
func LoadOrCreate(dir string) (*Key, error) {
	k, err := Load(dir)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create home %s: %w", dir, err)
	}
	k, err = Generate()
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(k.priv, "tunnel node "+k.id.Short())
	if err != nil {
		return nil, fmt.Errorf("encode identity: %w", err)
	}
	path := filepath.Join(dir, KeyFile)
	// Write to a temporary file and link it into place, so that two
	// processes starting at once agree on one key and a full disk never
	// leaves a truncated key behind.
	tmp, err := os.CreateTemp(dir, ".node.key-*")
	if err != nil {
		return nil, fmt.Errorf("create identity in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create identity: %w", err)
	}
	if _, err := tmp.Write(pem.EncodeToMemory(block)); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write identity %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write identity %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write identity %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return Load(dir) // another process won the race
		}
		return nil, fmt.Errorf("install identity %s: %w", path, err)
	}
	return k, nil
}

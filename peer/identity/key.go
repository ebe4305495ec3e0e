package identity

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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

// Load reads the key in dir. A missing file is reported with
// fs.ErrNotExist; a file open to group or others is refused (ErrExposed).
func Load(dir string) (*Key, error) { return LoadFile(dir, KeyFile) }

// LoadFile reads the key in the file name inside dir, as Load does.
func LoadFile(dir, name string) (*Key, error) {
	path := filepath.Join(dir, name)
	data, err := ReadPrivateFile(path)
	if err != nil {
		return nil, fmt.Errorf("read identity %s: %w", path, err)
	}
	k, err := ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("parse identity %s: %w (move it aside to create a new identity)", path, err)
	}
	return k, nil
}

// ParseKeyFile parses an unencrypted OpenSSH Ed25519 private key file.
func ParseKeyFile(data []byte) (*Key, error) {
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w (want an unencrypted OpenSSH Ed25519 private key)", err)
	}
	var priv ed25519.PrivateKey
	switch p := raw.(type) {
	case *ed25519.PrivateKey:
		priv = *p
	case ed25519.PrivateKey:
		priv = p
	default:
		return nil, fmt.Errorf("key is %T, want Ed25519", raw)
	}
	// An OpenSSH Ed25519 key holds the seed and the public key, and
	// x/crypto/ssh takes both as they are. A public half that is not the
	// seed's would become this node's ID (any key, a weak one included)
	// with no private key behind it: every handshake and signature would
	// fail, after `tunnel id` had printed it. The seed is the key.
	if !bytes.Equal(priv, ed25519.NewKeyFromSeed(priv.Seed())) {
		return nil, errors.New("key file's public key is not its private key's")
	}
	return FromPrivateKey(priv), nil
}

// LoadOrCreate reads the key in dir, creating dir (0700) and a new key file
// (0600) if there is none. An existing file that cannot be read or parsed,
// or that group or others may access (ErrExposed), is an error and is
// never overwritten: it may be the only copy of an identity.
func LoadOrCreate(dir string) (*Key, error) { return LoadOrCreateFile(dir, KeyFile) }

// LoadOrCreateFile is LoadOrCreate for the key in the file name inside
// dir: a role that must not act with the node's key (the public gateway)
// keeps its own, beside it.
func LoadOrCreateFile(dir, name string) (*Key, error) {
	k, err := LoadFile(dir, name)
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
	comment := "tunnel node " + k.id.Short()
	if name != KeyFile {
		comment = "tunnel " + strings.TrimSuffix(name, filepath.Ext(name)) + " " + k.id.Short()
	}
	if err := WriteKeyFile(filepath.Join(dir, name), k, comment); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return LoadFile(dir, name) // another process won the race
		}
		return nil, fmt.Errorf("create identity: %w", err)
	}
	return k, nil
}

// WriteKeyFile writes k to path as an OpenSSH private key, mode 0600. Of
// two concurrent writers exactly one wins: an existing path is never
// replaced (the error wraps fs.ErrExist).
func WriteKeyFile(path string, k *Key, comment string) error {
	block, err := ssh.MarshalPrivateKey(k.priv, comment)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	if err := WriteFile(path, pem.EncodeToMemory(block), 0o600, false); err != nil {
		return fmt.Errorf("write key %s: %w", path, err)
	}
	return nil
}

// WriteFile writes data to path, whole or not at all: it writes a
// temporary file beside path (its name starts with a dot), syncs it, and
// then links it into place — failing with an error wrapping fs.ErrExist if
// path exists — or, with replace, renames it over path. A full disk never
// leaves a truncated file behind, and a reader sees the old content or the
// new, never half.
func WriteFile(path string, data []byte, mode os.FileMode, replace bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(mode)
	if err == nil {
		_, err = tmp.Write(data)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if replace {
		return os.Rename(tmp.Name(), path)
	}
	return os.Link(tmp.Name(), path)
}

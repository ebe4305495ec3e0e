package fleet

import (
	"crypto/ed25519"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// Create makes a new fleet key in home and returns it. An existing fleet
// key is an error and is left alone: it signed every credential of its
// fleet, and a new key would make them all worthless.
func Create(home string) (*identity.Key, error) {
	path := filepath.Join(home, KeyFile)
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("create fleet key: %s already exists (not overwriting it: it signed every credential of its fleet)", path)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("create home %s: %w", home, err)
	}
	k, err := identity.Generate()
	if err != nil {
		return nil, fmt.Errorf("create fleet key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(k.PrivateKey(), "tunnel fleet "+k.ID().Short())
	if err != nil {
		return nil, fmt.Errorf("encode fleet key: %w", err)
	}
	// A temporary file linked into place: a full disk never leaves a
	// truncated key behind, and of two concurrent creates exactly one wins
	// (link, unlike rename, fails when the name exists).
	tmp, err := os.CreateTemp(home, ".fleet.key-*")
	if err != nil {
		return nil, fmt.Errorf("create fleet key in %s: %w", home, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create fleet key %s: %w", path, err)
	}
	if _, err := tmp.Write(pem.EncodeToMemory(block)); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write fleet key %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write fleet key %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write fleet key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create fleet key: %s already exists (not overwriting it: it signed every credential of its fleet)", path)
		}
		return nil, fmt.Errorf("install fleet key %s: %w", path, err)
	}
	return k, nil
}

// LoadKey reads the fleet key in home. A missing key is reported with
// fs.ErrNotExist and the command that makes one.
func LoadKey(home string) (*identity.Key, error) {
	path := filepath.Join(home, KeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no fleet key %s (run 'tunnel fleet create' to make one): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read fleet key %s: %w", path, err)
	}
	raw, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("parse fleet key %s: %w (want an unencrypted OpenSSH Ed25519 private key)", path, err)
	}
	switch p := raw.(type) {
	case *ed25519.PrivateKey:
		return identity.FromPrivateKey(*p), nil
	case ed25519.PrivateKey:
		return identity.FromPrivateKey(p), nil
	}
	return nil, fmt.Errorf("parse fleet key %s: key is %T, want Ed25519", path, raw)
}

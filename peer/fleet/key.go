package fleet

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

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
	if err := identity.WriteKeyFile(path, k, "tunnel fleet "+k.ID().Short()); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create fleet key: %s already exists (not overwriting it: it signed every credential of its fleet)", path)
		}
		return nil, fmt.Errorf("create fleet key: %w", err)
	}
	return k, nil
}

// LoadKey reads the fleet key in home. A missing key is reported with
// fs.ErrNotExist and the command that makes one; a key file group or
// others may access is refused (identity.ErrExposed), with the command
// that fixes it.
func LoadKey(home string) (*identity.Key, error) {
	path := filepath.Join(home, KeyFile)
	data, err := identity.ReadPrivateFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no fleet key %s (run 'tunnel fleet create' to make one): %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read fleet key %s: %w", path, err)
	}
	k, err := identity.ParseKeyFile(data)
	if err != nil {
		return nil, fmt.Errorf("parse fleet key %s: %w", path, err)
	}
	return k, nil
}

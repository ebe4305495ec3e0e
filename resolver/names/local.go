package names

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// LocalFile is the pet names file in the home.
const LocalFile = "names"

// maxFile bounds what is read of any names file: ~120 bytes a name.
const maxFile = 1 << 20

// ErrUnknownName: Remove was asked for a pet name that is not set.
var ErrUnknownName = errors.New("no such name")

// ErrCorrupt marks a names file of the home that cannot be read as one.
var ErrCorrupt = errors.New("damaged names file")

// local is the pet names: name → ID.
type local map[string]identity.ID

// readLocal reads the home's pet names; no file is no names.
func readLocal(home string) (local, error) {
	path := filepath.Join(home, LocalFile)
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return local{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read names %s: %w", path, err)
	}
	m, err := parseLocal(data)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrCorrupt, path, err)
	}
	return m, nil
}

// parseLocal parses the pet names file (see the package comment).
func parseLocal(data []byte) (local, error) {
	m := local{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 2 {
			return nil, fmt.Errorf("line %d: want \"NAME DEVICE_ID\", got %d fields", i+1, len(f))
		}
		name, err := identity.ParsePetName(f[0])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		id, err := identity.ParseID(f[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("line %d: name %s is set twice", i+1, name)
		}
		m[name] = id
	}
	return m, nil
}

// writeLocal replaces the pet names file with m, whole or not at all.
func writeLocal(home string, m local) error {
	var b bytes.Buffer
	b.WriteString("# tunnel pet names: NAME DEVICE_ID, one a line; NAME.tunnel reaches the device.\n")
	b.WriteString("# 'tunnel name add NAME ID' and 'tunnel name rm NAME' edit this file.\n")
	for _, name := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s %s\n", name, m[name])
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return fmt.Errorf("write names: %w", err)
	}
	path := filepath.Join(home, LocalFile)
	if err := identity.WriteFile(path, b.Bytes(), 0o600, true); err != nil {
		return fmt.Errorf("write names %s: %w", path, err)
	}
	return nil
}

// Add sets the pet name name (identity.ParsePetName) for id in home. It
// returns the ID the name stood for before, if any. A pet names file that
// cannot be read is reported and left as it is.
func Add(home, name string, id identity.ID) (previous identity.ID, err error) {
	name, err = identity.ParsePetName(name)
	if err != nil {
		return previous, err
	}
	if id.IsZero() {
		return previous, fmt.Errorf("name %s: no device ID", name)
	}
	m, err := readLocal(home)
	if err != nil {
		return previous, err
	}
	previous = m[name]
	m[name] = id
	return previous, writeLocal(home, m)
}

// Remove removes the pet name name from home and returns the ID it stood
// for. A name that is not a pet name wraps ErrUnknownName.
func Remove(home, name string) (identity.ID, error) {
	m, err := readLocal(home)
	if err != nil {
		return identity.ID{}, err
	}
	key := strings.ToLower(name)
	id, ok := m[key]
	if !ok {
		return identity.ID{}, fmt.Errorf("%w: %q is not a pet name of this home (tunnel name list)", ErrUnknownName, name)
	}
	delete(m, key)
	return id, writeLocal(home, m)
}

// readFile reads the file at path, at most maxFile bytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrCorrupt, maxFile)
	}
	return data, nil
}

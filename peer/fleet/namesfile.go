package fleet

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// NamesFile, beside KeyFile in the admin's home, is the fleet's name list
// as last signed: the admin edits it with 'tunnel fleet names add/rm', and
// export prints it as it is. Keeping it signed means a list the admin
// never signed cannot slip out through export.
const NamesFile = "fleet.names"

// LoadNames returns the name list of the fleet whose key is key, from its
// admin's home; an empty list (serial 0) if none was signed yet.
func LoadNames(home string, key *identity.Key) (*NameList, error) {
	path := filepath.Join(home, NamesFile)
	data, err := readBounded(path, MaxNamesFile)
	if errors.Is(err, fs.ErrNotExist) {
		return &NameList{Fleet: key.ID()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read fleet names %s: %w", path, err)
	}
	l, err := VerifyNames(data, key.ID())
	if err != nil {
		return nil, fmt.Errorf("read fleet names %s: %w", path, err)
	}
	return l, nil
}

// SaveNames signs l with key as its next version — serial max(previous+1,
// now in Unix seconds), issued now — and stores it whole or not at all.
// It returns the signed list.
func SaveNames(home string, key *identity.Key, l *NameList, now time.Time) ([]byte, error) {
	next := *l
	next.Serial = max(l.Serial+1, uint64(max(now.Unix(), 0)))
	next.Issued = now
	signed, err := next.Sign(key)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(home, NamesFile)
	if err := identity.WriteFile(path, signed, 0o600, true); err != nil {
		return nil, fmt.Errorf("write fleet names %s: %w", path, err)
	}
	*l = next
	return signed, nil
}

// ExportNames returns the signed list stored in the admin's home, checked
// again against key. With no list yet, the error wraps fs.ErrNotExist.
func ExportNames(home string, key *identity.Key) ([]byte, error) {
	path := filepath.Join(home, NamesFile)
	data, err := readBounded(path, MaxNamesFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no fleet names yet (add one with 'tunnel fleet names add NAME ID'): %w", err)
	}
	if err != nil {
		return nil, fmt.Errorf("read fleet names %s: %w", path, err)
	}
	if _, err := VerifyNames(data, key.ID()); err != nil {
		return nil, fmt.Errorf("read fleet names %s: %w", path, err)
	}
	return data, nil
}

// readBounded reads the file at path, refusing one of more than limit
// bytes instead of reading it all.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readLimited(f, limit)
}

// readLimited reads r to its end, at most limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("more than %d bytes", limit)
	}
	return data, nil
}

// ReadNamesFrom reads a signed name list from the file name, or from
// stdin when name is "-", without parsing it; it returns what to call the
// source in messages. At most MaxNamesFile bytes.
func ReadNamesFrom(name string, stdin io.Reader) ([]byte, string, error) {
	if name == "-" {
		data, err := readLimited(stdin, MaxNamesFile)
		return data, "standard input", err
	}
	data, err := readBounded(name, MaxNamesFile)
	return data, name, err
}

package names

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

// FleetDir holds, in the home, the imported name list of each fleet:
// "<fleet-id>.signed".
const FleetDir = "fleetnames"

const signedSuffix = ".signed"

// Import outcomes callers tell apart.
var (
	// ErrNotJoined: the list is signed by a fleet this node holds no
	// credential of ('tunnel fleet join' first).
	ErrNotJoined = errors.New("not a member of the fleet that signed these names")
	// ErrRollback: the list is older than the one already imported.
	ErrRollback = errors.New("older than the names already imported")
)

// Imported is what Import did.
type Imported struct {
	List *fleet.NameList
	// Previous is the serial of the list it replaced, 0 if none.
	Previous uint64
	// Unchanged: the very same list was imported before.
	Unchanged bool
}

// Import checks a signed name list (fleet.ParseNames) and makes it this
// home's names of its fleet, replacing that fleet's earlier list. It is
// refused, and nothing is written, unless the node holds a credential of
// that fleet and the list's serial is not below the one held. Errors wrap
// fleet.ErrBadNames, ErrNotJoined or ErrRollback when the list is at
// fault.
func Import(home string, data []byte) (Imported, error) {
	l, err := fleet.ParseNames(data)
	if err != nil {
		return Imported{}, err
	}
	// The member trusts the fleet it joined: its credential names that
	// fleet's key, and only that key's lists are taken.
	if _, err := fleet.For(home, l.Fleet); errors.Is(err, fs.ErrNotExist) {
		return Imported{}, fmt.Errorf("%w: the names are fleet %s's, and this node holds no credential of it (tunnel fleet list)", ErrNotJoined, l.Fleet)
	} else if err != nil {
		return Imported{}, fmt.Errorf("import names of fleet %s: %w", l.Fleet.Short(), err)
	}
	path := filepath.Join(home, FleetDir, l.Fleet.String()+signedSuffix)
	res := Imported{List: l}
	held, err := readFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return res, fmt.Errorf("import names of fleet %s: read %s: %w", l.Fleet.Short(), path, err)
	default:
		old, err := fleet.VerifyNames(held, l.Fleet)
		if err != nil {
			// Overwriting it would lose the serial that guards against
			// rollback; whoever removes the file decides that.
			return res, fmt.Errorf("import names of fleet %s: %w %s (remove it to import again): %w", l.Fleet.Short(), ErrCorrupt, path, err)
		}
		res.Previous = old.Serial
		switch {
		case l.Serial < old.Serial:
			return res, fmt.Errorf("%w: this list of fleet %s has serial %d, the one imported has %d", ErrRollback, l.Fleet.Short(), l.Serial, old.Serial)
		case l.Serial == old.Serial && bytes.Equal(held, data):
			res.Unchanged = true
			return res, nil
		case l.Serial == old.Serial:
			return res, fmt.Errorf("%w: fleet %s signed another list with the same serial %d", ErrRollback, l.Fleet.Short(), l.Serial)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return res, fmt.Errorf("import names of fleet %s: %w", l.Fleet.Short(), err)
	}
	if err := identity.WriteFile(path, data, 0o600, true); err != nil {
		return res, fmt.Errorf("import names of fleet %s: %w", l.Fleet.Short(), err)
	}
	return res, nil
}

// readImported reads every fleet's imported list in home, sorted by fleet
// ID. A file that cannot be read or does not verify is reported in the
// error, which names it; the lists that could be read are returned with it.
func readImported(home string) ([]*fleet.NameList, error) {
	dir := filepath.Join(home, FleetDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read imported names %s: %w", dir, err)
	}
	var lists []*fleet.NameList
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // WriteFile's temporary files
		}
		path := filepath.Join(dir, name)
		fleetName, ok := strings.CutSuffix(name, signedSuffix)
		f, err := identity.ParseID(fleetName)
		if !ok || err != nil || e.IsDir() {
			errs = append(errs, fmt.Errorf("%w %s: not <fleet-id>%s", ErrCorrupt, path, signedSuffix))
			continue
		}
		data, err := readFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read imported names %s: %w", path, err))
			continue
		}
		l, err := fleet.VerifyNames(data, f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%w %s: %w", ErrCorrupt, path, err))
			continue
		}
		lists = append(lists, l)
	}
	slices.SortFunc(lists, func(a, b *fleet.NameList) int { return strings.Compare(a.Fleet.String(), b.Fleet.String()) })
	return lists, errors.Join(errs...)
}

package fleet

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/peer/identity"
)

// certSuffix ends the name of a credential file: "<fleet-id>.cert".
const certSuffix = ".cert"

// Install stores c as this node's credential for c.Fleet, replacing the one
// held before. It refuses a credential issued to another node (it could
// never be used from here) and one that has already expired.
func Install(home string, c *Credential, self identity.ID) error {
	if c.Member != self {
		return fmt.Errorf("install credential for fleet %s: this credential is for %s, this node is %s", c.Fleet, c.Member, self)
	}
	if now := time.Now(); !now.Before(c.ValidBefore) {
		return fmt.Errorf("install credential for fleet %s: it expired at %s", c.Fleet, c.ValidBefore.Format(time.RFC3339))
	}
	dir := filepath.Join(home, CertDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("install credential for fleet %s: %w", c.Fleet, err)
	}
	path := filepath.Join(dir, c.Fleet.String()+certSuffix)
	// Write a temporary file and rename it over the old one, so a reader
	// sees the old credential or the new one, never half of one. The
	// temporary name starts with a dot, which Held skips.
	tmp, err := os.CreateTemp(dir, "."+c.Fleet.String()+".tmp-*")
	if err != nil {
		return fmt.Errorf("install credential for fleet %s: %w", c.Fleet, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("install credential for fleet %s: %w", c.Fleet, err)
	}
	if _, err := tmp.Write(c.Marshal()); err != nil {
		tmp.Close()
		return fmt.Errorf("install credential for fleet %s: write %s: %w", c.Fleet, path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("install credential for fleet %s: write %s: %w", c.Fleet, path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("install credential for fleet %s: write %s: %w", c.Fleet, path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("install credential for fleet %s: %w", c.Fleet, err)
	}
	return nil
}

// Held returns every credential installed in home, sorted by fleet ID. A
// file in the credential directory that cannot be read or is not a
// credential is reported in the error, which names each such file; the
// credentials that could be read are returned with it.
func Held(home string) ([]*Credential, error) {
	dir := filepath.Join(home, CertDir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list credentials in %s: %w", dir, err)
	}
	var held []*Credential
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue // Install's temporary files
		}
		path := filepath.Join(dir, name)
		fleetName, ok := strings.CutSuffix(name, certSuffix)
		if !ok || e.IsDir() {
			errs = append(errs, fmt.Errorf("%s: not a credential file (want <fleet-id>%s)", path, certSuffix))
			continue
		}
		fleet, err := identity.ParseID(fleetName)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: not a credential file (want <fleet-id>%s): %w", path, certSuffix, err))
			continue
		}
		c, err := load(path, fleet)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		held = append(held, c)
	}
	slices.SortFunc(held, func(a, b *Credential) int { return strings.Compare(a.Fleet.String(), b.Fleet.String()) })
	return held, errors.Join(errs...)
}

// For returns this node's credential for fleet. If it holds none, the
// error wraps fs.ErrNotExist.
func For(home string, fleet ID) (*Credential, error) {
	return load(filepath.Join(home, CertDir, fleet.String()+certSuffix), fleet)
}

// load reads the credential file at path, which must hold one of fleet.
func load(path string, fleet ID) (*Credential, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credential for fleet %s: %w", fleet, err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("read credential %s: %w", path, err)
	}
	// The file name is what For looks up; a credential of another fleet
	// under it (a file copied by hand) would be sent to the wrong devices.
	if c.Fleet != fleet {
		return nil, fmt.Errorf("read credential %s: %w: holds a credential of fleet %s", path, ErrWrongFleet, c.Fleet)
	}
	return c, nil
}

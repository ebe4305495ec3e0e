package fleet

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
	if c.State(time.Now()) == "expired" {
		return fmt.Errorf("install credential for fleet %s: it expired at %s", c.Fleet, c.ValidBefore.Format(time.RFC3339))
	}
	dir := filepath.Join(home, CertDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("install credential for fleet %s: %w", c.Fleet, err)
	}
	path := filepath.Join(dir, c.Fleet.String()+certSuffix)
	if err := identity.WriteFile(path, c.Marshal(), 0o600, true); err != nil {
		return fmt.Errorf("install credential for fleet %s: %w", c.Fleet, err)
	}
	return nil
}

// Save writes c to path (mode 0644: a credential is not secret without
// its member's key), replacing what was there, for the member to join.
func Save(path string, c *Credential) error {
	if err := identity.WriteFile(path, c.Marshal(), 0o644, true); err != nil {
		return fmt.Errorf("write credential for %s: %w", c.Member, err)
	}
	return nil
}

// MaxFile bounds what Read takes: a credential is a few hundred bytes,
// and standard input may be anything.
const MaxFile = 64 << 10

// Read reads and parses one credential from r (a file, or standard
// input), at most MaxFile bytes.
func Read(r io.Reader) (*Credential, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFile {
		return nil, malformed("more than %d bytes; a credential is one line", MaxFile)
	}
	return Parse(data)
}

// Summary is what `tunnel fleet list` shows of a credential.
type Summary struct {
	Fleet      string `json:"fleet"`
	Member     string `json:"member"`
	ValidAfter string `json:"valid_after"`
	ValidUntil string `json:"valid_until"`
	Status     string `json:"status"` // valid, expired or not-yet-valid
	Serial     uint64 `json:"serial"`
}

// Summary describes c at now.
func (c *Credential) Summary(now time.Time) Summary {
	return Summary{Fleet: c.Fleet.String(), Member: c.Member.String(),
		ValidAfter: c.ValidAfter.Format(time.RFC3339), ValidUntil: c.ValidBefore.Format(time.RFC3339),
		Status: c.State(now), Serial: c.Serial}
}

// ReadNamed reads a credential from the file name, or from stdin when
// name is "-"; it returns what to call the source in messages.
func ReadNamed(name string, stdin io.Reader) (*Credential, string, error) {
	if name == "-" {
		c, err := Read(stdin)
		return c, "standard input", err
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, name, err
	}
	defer f.Close()
	c, err := Read(f)
	return c, name, err
}

// State says where now falls in c's validity, as OpenSSH reads it (from
// ValidAfter inclusive to ValidBefore exclusive): "valid", "expired" or
// "not-yet-valid". Verify, Install and listings all go by it.
func (c *Credential) State(now time.Time) string {
	switch {
	case now.Before(c.ValidAfter):
		return "not-yet-valid"
	case !now.Before(c.ValidBefore):
		return "expired"
	}
	return "valid"
}

// maxValidityDays keeps a validity in days within a time.Duration.
const maxValidityDays = math.MaxInt64 / int64(24*time.Hour)

// ParseValidity parses how long a credential is valid: a Go duration
// (720h), or a whole number of days with the suffix d (30d), which Go
// durations lack. It must be more than zero.
func ParseValidity(s string) (time.Duration, error) {
	bad := fmt.Errorf("validity %q: want a duration such as 720h or a number of days such as 30d", s)
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(days, 10, 64)
		if err != nil || n > maxValidityDays {
			return 0, bad
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, bad
		}
	}
	if d <= 0 {
		return 0, fmt.Errorf("validity %q: must be more than zero", s)
	}
	return d, nil
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

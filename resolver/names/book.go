package names

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tunnel-dev/tunnel/peer/fleet"
	"github.com/tunnel-dev/tunnel/peer/identity"
)

// recheck is how often, at most, a Book looks at its files again: a name
// added while socksd runs works within a second, and a busy socksd costs
// two stats a second, not two per connection.
const recheck = time.Second

// settle: a file changed this recently may change again within the same
// tick of the file system's clock without its stamp changing, so it is
// read again at the next check rather than trusted.
const settle = 2 * time.Second

// snapshot is what the files said when last read.
type snapshot struct {
	local   local
	fleets  []*fleet.NameList // sorted by fleet ID: the first one wins
	readErr error
}

// lookup applies the package's rule: pet name first, then fleets in
// order.
func (s *snapshot) lookup(name string) (identity.ID, bool) {
	if id, ok := s.local[name]; ok {
		return id, true
	}
	for _, l := range s.fleets {
		if id, ok := l.Lookup(name); ok {
			return id, true
		}
	}
	return identity.ID{}, false
}

// read reads every names file of home.
func read(home string) *snapshot {
	s := &snapshot{}
	var localErr error
	if s.local, localErr = readLocal(home); s.local == nil {
		s.local = local{}
	}
	var fleetErr error
	s.fleets, fleetErr = readImported(home)
	s.readErr = errors.Join(localErr, fleetErr)
	return s
}

// stamp tells whether the files changed since they were read.
type stamp struct {
	local, dir fileStamp
}

type fileStamp struct {
	exists bool
	mod    time.Time
	size   int64
}

func stampOf(path string) fileStamp {
	st, err := os.Stat(path)
	if err != nil {
		return fileStamp{}
	}
	return fileStamp{exists: true, mod: st.ModTime(), size: st.Size()}
}

// Book answers which device a name means, for a running node, from the
// files of one home; it reads them again when they change, so names added
// or imported while the node runs work without a restart. Safe for
// concurrent use.
type Book struct {
	home string
	log  zerolog.Logger
	now  func() time.Time

	mu     sync.Mutex
	next   time.Time // no look at the files before this
	stamp  stamp
	snap   *snapshot
	logged string // the read error last logged
}

// Open returns the book of home. Files it cannot read are logged, once per
// change of the files, and give no names.
func Open(home string, log zerolog.Logger) *Book {
	return &Book{home: home, log: log, now: time.Now}
}

// Lookup returns the device name stands for (name lowercase, as
// resolver.DeviceLabel gives it). It has the shape of dialer.Config.Names.
func (b *Book) Lookup(name string) (identity.ID, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now := b.now(); b.snap == nil || !now.Before(b.next) {
		b.next = now.Add(recheck)
		st := stamp{stampOf(filepath.Join(b.home, LocalFile)), stampOf(filepath.Join(b.home, FleetDir))}
		if b.snap == nil || st != b.stamp {
			b.snap = read(b.home)
			if err := b.snap.readErr; err != nil && err.Error() != b.logged {
				b.logged = err.Error()
				b.log.Warn().Err(b.snap.readErr).Msg("names: a names file of the home cannot be read; its names do not resolve (tunnel name list)")
			} else if err == nil {
				b.logged = ""
			}
			// A stamp taken just after a write may miss the next write in
			// the same clock tick: keep none, and read again next time.
			if now.Sub(st.local.mod) < settle || now.Sub(st.dir.mod) < settle {
				st = stamp{}
			}
			b.stamp = st
		}
	}
	return b.snap.lookup(name)
}

package names

import (
	"maps"
	"slices"
	"strings"
)

// Entry is one name of a home, as 'tunnel name list' shows it.
type Entry struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// Source is "local" for a pet name, "fleet" for an imported one.
	Source string `json:"source"`
	Fleet  string `json:"fleet,omitempty"`  // the fleet that signed it
	Serial uint64 `json:"serial,omitempty"` // of that fleet's list
	// ShadowedBy says which entry of the same name wins over this one:
	// "local", or the ID of a fleet whose ID sorts first. Empty: this one
	// is what NAME.tunnel reaches.
	ShadowedBy string `json:"shadowed_by,omitempty"`
}

// List returns every name of home, sorted by name, winner first among
// entries of the same name. Files that cannot be read are reported in the
// error, which names each; the names that could be read are returned with
// it.
func List(home string) ([]Entry, error) {
	s := read(home)
	var out []Entry
	winner := map[string]string{} // name → who has it so far
	for _, name := range slices.Sorted(maps.Keys(s.local)) {
		out = append(out, Entry{Name: name, ID: s.local[name].String(), Source: "local"})
		winner[name] = "local"
	}
	for _, l := range s.fleets {
		for _, e := range l.Entries {
			en := Entry{Name: e.Name, ID: e.ID.String(), Source: "fleet", Fleet: l.Fleet.String(), Serial: l.Serial}
			if w, ok := winner[e.Name]; ok {
				en.ShadowedBy = w
			} else {
				winner[e.Name] = l.Fleet.String()
			}
			out = append(out, en)
		}
	}
	// Stable: within a name, local first, then fleets in ID order — the
	// order of precedence.
	slices.SortStableFunc(out, func(a, b Entry) int { return strings.Compare(a.Name, b.Name) })
	return out, s.readErr
}

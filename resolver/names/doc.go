// Package names is a home's book of names for devices: pet names the user
// sets ("garage" → an ID) and the name lists of the fleets the node
// joined, imported from the signed lists their admins export. It answers
// one question for the dialer — which device does "garage.tunnel" mean —
// and never sends a name anywhere: names are local, the ID stays the only
// global name.
//
// Files in the home, each written whole or not at all (temporary file,
// then rename; mode 0600):
//   - "names": the pet names, one "NAME DEVICE_ID" a line, sorted by
//     name; lines starting with "#" and blank lines are ignored, so it may
//     be edited by hand.
//   - "fleetnames/<fleet-id>.signed": the last list of that fleet this
//     node imported, exactly as its admin signed it (peer/fleet's
//     names.go has the format), checked again whenever it is read.
//
// Which name wins: a pet name over any fleet's; between fleets, the fleet
// whose ID sorts first (by its text form) — a rule every member's machine
// applies the same way, whatever order it imported in.
//
// Invariants: a file that does not parse contributes no name and is
// reported (by List, by every command that would rewrite it, and in the
// log of a running Book), never half-read, and never overwritten by a
// command that could not read it; an import is refused unless it is signed
// by a fleet this node holds a credential of, and its serial is not below
// the one held (a rollback to an older list is refused).
package names

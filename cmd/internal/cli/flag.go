package cli

import (
	"errors"
	"flag"
	"math"
	"strconv"
	"strings"
	"time"
)

// Flag is a flag a command takes. The types below are all there are; a
// flag's struct is its definition and is never written to (the values
// parsed live in the Context), so one App may run many times.
type Flag interface {
	// Names are the flag's name and then its aliases.
	Names() []string
	spec() flagSpec
}

// Check returns an error, saying what f wants, if v is not a value f
// takes: what parsing f would refuse.
func Check(f Flag, v string) error { return f.spec().value.Set(v) }

// flagSpec is what every flag type has in common.
type flagSpec struct {
	usage  string
	env    []string
	hidden bool
	value  flag.Value // a new one, holding the default
}

// The errors the values give, which the command line shows after the
// flag's name and value.
var (
	errWantInt      = errors.New("want a whole number")
	errWantUint     = errors.New("want a whole number from 0")
	errWantFloat    = errors.New("want a number")
	errWantBool     = errors.New("want true or false")
	errWantDuration = errors.New("want a duration such as 10s or 5m")
)

func names(name string, aliases []string) []string {
	return append([]string{name}, aliases...)
}

// StringFlag takes any text.
type StringFlag struct {
	Name    string
	Aliases []string
	Usage   string // a `WORD` in backquotes names the value in the help
	EnvVars []string
	Value   string // the default
	Hidden  bool
}

func (f *StringFlag) Names() []string { return names(f.Name, f.Aliases) }
func (f *StringFlag) spec() flagSpec {
	v := stringValue(f.Value)
	return flagSpec{f.Usage, f.EnvVars, f.Hidden, &v}
}

// BoolFlag is a switch.
type BoolFlag struct {
	Name    string
	Aliases []string
	Usage   string
	EnvVars []string
	Value   bool
	Hidden  bool
}

func (f *BoolFlag) Names() []string { return names(f.Name, f.Aliases) }
func (f *BoolFlag) spec() flagSpec {
	v := boolValue(f.Value)
	return flagSpec{f.Usage, f.EnvVars, f.Hidden, &v}
}

// IntFlag takes a whole number (0x and 0 prefixes as in Go).
type IntFlag struct {
	Name    string
	Aliases []string
	Usage   string
	EnvVars []string
	Value   int
	Hidden  bool
}

func (f *IntFlag) Names() []string { return names(f.Name, f.Aliases) }
func (f *IntFlag) spec() flagSpec {
	v := intValue(f.Value)
	return flagSpec{f.Usage, f.EnvVars, f.Hidden, &v}
}

// UintFlag takes a whole number from 0.
type UintFlag struct {
	Name    string
	Aliases []string
	Usage   string
	EnvVars []string
	Value   uint
	Hidden  bool
}

func (f *UintFlag) Names() []string { return names(f.Name, f.Aliases) }
func (f *UintFlag) spec() flagSpec {
	v := uintValue(f.Value)
	return flagSpec{f.Usage, f.EnvVars, f.Hidden, &v}
}

// Float64Flag takes a number.
type Float64Flag struct {
	Name    string
	Aliases []string
	Usage   string
	EnvVars []string
	Value   float64
	Hidden  bool
}

func (f *Float64Flag) Names() []string { return names(f.Name, f.Aliases) }
func (f *Float64Flag) spec() flagSpec {
	v := floatValue(f.Value)
	return flagSpec{f.Usage, f.EnvVars, f.Hidden, &v}
}

// DurationFlag takes a Go duration: 300ms, 10s, 1h30m.
type DurationFlag struct {
	Name    string
	Aliases []string
	Usage   string
	EnvVars []string
	Value   time.Duration
	Hidden  bool
}

func (f *DurationFlag) Names() []string { return names(f.Name, f.Aliases) }
func (f *DurationFlag) spec() flagSpec {
	v := durationValue(f.Value)
	return flagSpec{f.Usage, f.EnvVars, f.Hidden, &v}
}

// StringSliceFlag may be given many times; each value is kept as given
// (commas are not split). An environment variable gives one value.
type StringSliceFlag struct {
	Name    string
	Aliases []string
	Usage   string
	EnvVars []string
	Hidden  bool
}

func (f *StringSliceFlag) Names() []string { return names(f.Name, f.Aliases) }
func (f *StringSliceFlag) spec() flagSpec {
	return flagSpec{f.Usage, f.EnvVars, f.Hidden, new(stringsValue)}
}

// The values, one type per kind of flag. Each implements flag.Getter.

type stringValue string

func (v *stringValue) Set(s string) error { *v = stringValue(s); return nil }
func (v *stringValue) String() string     { return string(*v) }
func (v *stringValue) Get() any           { return string(*v) }

type boolValue bool

func (v *boolValue) Set(s string) error {
	b, err := strconv.ParseBool(s)
	if err != nil {
		return errWantBool
	}
	*v = boolValue(b)
	return nil
}
func (v *boolValue) String() string   { return strconv.FormatBool(bool(*v)) }
func (v *boolValue) Get() any         { return bool(*v) }
func (v *boolValue) IsBoolFlag() bool { return true } // the flag package's mark: takes no word

type intValue int

func (v *intValue) Set(s string) error {
	n, err := strconv.ParseInt(s, 0, strconv.IntSize)
	if err != nil {
		return errWantInt
	}
	*v = intValue(n)
	return nil
}
func (v *intValue) String() string { return strconv.Itoa(int(*v)) }
func (v *intValue) Get() any       { return int(*v) }

type uintValue uint

func (v *uintValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, strconv.IntSize)
	if err != nil {
		return errWantUint
	}
	*v = uintValue(n)
	return nil
}
func (v *uintValue) String() string { return strconv.FormatUint(uint64(*v), 10) }
func (v *uintValue) Get() any       { return uint(*v) }

type floatValue float64

func (v *floatValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) {
		return errWantFloat
	}
	*v = floatValue(f)
	return nil
}
func (v *floatValue) String() string { return strconv.FormatFloat(float64(*v), 'g', -1, 64) }
func (v *floatValue) Get() any       { return float64(*v) }

type durationValue time.Duration

func (v *durationValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errWantDuration
	}
	*v = durationValue(d)
	return nil
}
func (v *durationValue) String() string { return time.Duration(*v).String() }
func (v *durationValue) Get() any       { return time.Duration(*v) }

type stringsValue []string

func (v *stringsValue) Set(s string) error { *v = append(*v, s); return nil }
func (v *stringsValue) String() string     { return strings.Join(*v, ", ") }
func (v *stringsValue) Get() any           { return []string(*v) }

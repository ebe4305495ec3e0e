package limit

// OrDefault is v if it is above zero (a limit given), else def: how every
// limit struct fills the fields its caller left at zero.
func OrDefault[T int | int64 | float64](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

//go:build !linux

package exepages

// Release does nothing here: the pages are the operating system's to
// manage.
func Release() (int64, error) { return 0, nil }

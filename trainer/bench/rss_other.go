//go:build !(linux || darwin || freebsd)

package bench

// peakRSS is unknown on this platform.
func peakRSS() int64 { return 0 }

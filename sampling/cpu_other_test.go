//go:build !unix

package sampling

// cpuSeconds is unavailable here; the CPU-time metrics are skipped.
func cpuSeconds() float64 { return 0 }

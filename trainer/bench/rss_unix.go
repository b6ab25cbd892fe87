//go:build linux || darwin || freebsd

package bench

import (
	"runtime"
	"syscall"
	"time"
)

// peakRSS is the process's peak resident set size in bytes (getrusage ru_maxrss, which is
// KiB on Linux and bytes on macOS).
func peakRSS() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	if runtime.GOOS == "darwin" {
		return int64(ru.Maxrss)
	}
	return int64(ru.Maxrss) * 1024
}

// cpuTime is the process's user+system CPU time so far (0 if unknown). On a loaded
// machine, work per CPU second is a steadier figure than work per wall second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

//go:build unix

package reward

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user + system) the process has used, so benchmarks can
// report throughput per CPU-second, which a loaded machine distorts less than wall time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

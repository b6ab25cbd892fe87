package kernels

import "golang.org/x/sys/unix"

// processCPUSeconds is the CPU time used by all threads of the test binary. Benchmarks
// report flops per CPU-second beside wall-clock rates because the machine is shared.
func processCPUSeconds() float64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return float64(ts.Nano()) / 1e9
}

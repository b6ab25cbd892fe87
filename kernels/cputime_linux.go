package kernels

import (
	"time"

	"golang.org/x/sys/unix"
)

// processCPUTime is the CPU time used so far by all threads of the process, or 0 if the
// clock cannot be read.
func processCPUTime() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}

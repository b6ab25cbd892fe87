//go:build !unix

package reward

import "time"

// processCPU is unavailable here; benchmarks then report wall-time figures only.
func processCPU() time.Duration { return 0 }

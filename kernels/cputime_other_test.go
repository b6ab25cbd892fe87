//go:build !linux

package kernels

// processCPUSeconds is not measured here; benchmarks then report wall-clock rates only.
func processCPUSeconds() float64 { return 0 }

//go:build !amd64

package kernels

// transpose8Rows has no fast version here; callers pack in Go.
func transpose8Rows(src []float32, lds int, dst []float32, ldd, nb int) bool { return false }

// gatherRows has no fast version here; callers pack in Go.
func gatherRows(src []float32, lds int, dst []float32, n, w int) bool { return false }

// interleave6Rows has no fast version here; callers pack in Go.
func interleave6Rows(src []float32, lds int, dst []float32, nb int) bool { return false }

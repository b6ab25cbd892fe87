//go:build !amd64

package kernels

// selectKernel returns the portable kernel: there is no assembly for this architecture.
func selectKernel(pureGo bool) *microKernel { return goKernel }

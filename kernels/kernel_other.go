//go:build !amd64

package kernels

// Kernels lists the sgemm micro-kernels this CPU can run: only the portable one here.
func Kernels() []string { return []string{goKernel.name} }

// selectKernel returns the portable kernel: there is no assembly for this architecture.
func selectKernel(string) *microKernel { return goKernel }

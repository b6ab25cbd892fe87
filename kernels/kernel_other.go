//go:build !amd64

package kernels

// Kernels lists the sgemm micro-kernels this CPU can run: only the portable one here.
func Kernels() []string { return []string{goKernel.name} }

// selectKernel returns the portable kernel: there is no assembly for this architecture.
func selectKernel(string) *microKernel { return goKernel }

// hasRowKernel is false: one-row products take the tiled path.
func hasRowKernel(*microKernel) bool { return false }

func rowKernel(kc int, a, b []float32, ldb int, c []float32, n int, alpha, beta float32) {
	panic("kernels: no one-row kernel on this architecture")
}

package kernels

// selectKernel picks the fastest micro-kernel this CPU supports.
func selectKernel(pureGo bool) *microKernel {
	return goKernel
}

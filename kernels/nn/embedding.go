package nn

// EmbeddingForward gathers rows of table ([vocab, dim]) into out: out[i] = table[ids[i]].
// Ids must already be validated to lie in [0, vocab).
func EmbeddingForward(table []float32, dim int, ids []int32, out []float32) {
	for i, id := range ids {
		copy(out[i*dim:(i+1)*dim], table[int(id)*dim:int(id+1)*dim])
	}
}

// EmbeddingBackward scatter-adds the output gradient into the table gradient:
// dTable[ids[i]] += dOut[i]. Repeated ids accumulate.
func EmbeddingBackward(dTable []float32, dim int, ids []int32, dOut []float32) {
	for i, id := range ids {
		axpy(1, dOut[i*dim:(i+1)*dim], dTable[int(id)*dim:int(id+1)*dim])
	}
}

// axpy computes y += a*x over len(x) elements.
func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

// dot returns sum x[i]*y[i] over len(x) elements, accumulated in float32 lanes.
func dot(x, y []float32) float32 {
	y = y[:len(x)]
	i, s0 := dotVec(x, y)
	var s1, s2, s3 float32
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

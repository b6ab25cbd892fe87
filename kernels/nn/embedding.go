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

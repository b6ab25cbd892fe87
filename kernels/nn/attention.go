package nn

import (
	"math"

	"github.com/posttrain/posttrain/kernels"
)

// AttnShape describes one head's causal attention: Tq queries against S keys, where query i
// sits at key position S-Tq+i and so sees keys [0, S-Tq+i]. Training uses Tq == S; cached
// decoding uses Tq < S with the earlier keys coming from the cache.
type AttnShape struct {
	Tq, S   int
	HeadDim int
	// Row strides of q, k, v and out (the full width of the projected rows, so one head is
	// a strided column block of them).
	QStride, KStride, VStride, OStride int
	// Scale multiplies q·k; usually 1/sqrt(HeadDim).
	Scale float32
}

// attnBlock is the number of query rows per sgemm call: rows in a block only need the keys
// up to the block's last row, so blocking skips most of the masked upper triangle.
const attnBlock = 64

// AttentionHeadForward computes one head of causal softmax attention:
// out = softmax(Scale * q k^T + mask) v. q, k, v and out start at the head's first column.
// segQ (len Tq) and segK (len S) are optional per-token segment ids: a query attends only
// keys of its own segment (block-diagonal causal masking for packed examples); nil means one
// segment. probs (Tq*S, row stride S) receives the attention probabilities for the backward
// pass; entries right of each block's causal limit are left untouched. The row softmax
// subtracts each row's own max. A row with no visible key outputs zeros.
// Sgemm calls go to pool; called from inside one of the pool's Parallel workers, they run
// single-threaded on that worker, so heads can be spread over the workers.
func AttentionHeadForward(pool *kernels.Pool, sh AttnShape, q, k, v []float32, segQ, segK []int32, probs, out []float32) {
	past := sh.S - sh.Tq
	for r0 := 0; r0 < sh.Tq; r0 += attnBlock {
		r1 := min(r0+attnBlock, sh.Tq)
		end := past + r1 // keys visible to the block's last row
		p := probs[r0*sh.S:]
		pool.Sgemm(false, true, r1-r0, end, sh.HeadDim, sh.Scale, q[r0*sh.QStride:], sh.QStride, k, sh.KStride, 0, p, sh.S)
		for i := r0; i < r1; i++ {
			row := probs[i*sh.S : i*sh.S+end]
			var sq int32
			if segQ != nil {
				sq = segQ[i]
			}
			softmaxCausal(row, past+i, segK, sq)
		}
		pool.Sgemm(false, false, r1-r0, sh.HeadDim, end, 1, p, sh.S, v, sh.VStride, 0, out[r0*sh.OStride:], sh.OStride)
	}
}

// softmaxCausal turns the scores in row into probabilities over the keys j <= last whose
// segment equals seg (all keys when segK is nil), with zeros elsewhere.
func softmaxCausal(row []float32, last int, segK []int32, seg int32) {
	vis := row[:last+1]
	clear(row[last+1:])
	negInf := float32(math.Inf(-1))
	if segK != nil {
		for j := range vis {
			if segK[j] != seg {
				vis[j] = negInf
			}
		}
	}
	mx := maxOf(vis)
	if mx == negInf {
		clear(vis)
		return
	}
	// Masked scores are -Inf and become exactly 0.
	scale(vis, 1/ExpShift(vis, vis, 1, -mx))
}

// AttentionHeadBackward back-propagates dout through AttentionHeadForward for one head. It
// overwrites dq and accumulates into dk and dv (several query heads share one key/value
// head under grouped-query attention, so the caller clears dk and dv once per group).
// dout, dq, dk and dv use the strides of out, q, k and v. scratch needs Tq*S floats.
func AttentionHeadBackward(pool *kernels.Pool, sh AttnShape, q, k, v, probs, dout, dq, dk, dv, scratch []float32) {
	past := sh.S - sh.Tq
	hd := sh.HeadDim
	for r0 := 0; r0 < sh.Tq; r0 += attnBlock {
		r1 := min(r0+attnBlock, sh.Tq)
		rb := r1 - r0
		end := past + r1
		p := probs[r0*sh.S:]
		ds := scratch[r0*sh.S:]
		do := dout[r0*sh.OStride:]
		// dP = dO V^T and dV += P^T dO.
		pool.Sgemm(false, true, rb, end, hd, 1, do, sh.OStride, v, sh.VStride, 0, ds, sh.S)
		pool.Sgemm(true, false, end, hd, rb, 1, p, sh.S, do, sh.OStride, 1, dv, sh.VStride)
		// dS = P * (dP - rowsum(P*dP)), with the score scale folded in.
		for i := r0; i < r1; i++ {
			pr := probs[i*sh.S : i*sh.S+end]
			dr := scratch[i*sh.S : i*sh.S+end]
			d := dot(pr, dr)
			for j := softmaxGradVec(pr, dr, d, sh.Scale); j < len(pr); j++ {
				dr[j] = sh.Scale * pr[j] * (dr[j] - d)
			}
		}
		// dQ = dS K and dK += dS^T Q.
		pool.Sgemm(false, false, rb, hd, end, 1, ds, sh.S, k, sh.KStride, 0, dq[r0*sh.QStride:], sh.QStride)
		pool.Sgemm(true, false, end, hd, rb, 1, ds, sh.S, q[r0*sh.QStride:], sh.QStride, 1, dk, sh.KStride)
	}
}

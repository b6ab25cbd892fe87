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
// segment. probs (Tq*S, row stride S) receives the attention probabilities; entries right
// of each block's causal limit are left untouched. The row softmax subtracts each row's own
// max. A row with no visible key outputs zeros.
// Sgemm calls go to pool; called from inside one of the pool's Parallel workers, they run
// single-threaded on that worker, so heads can be spread over the workers.
func AttentionHeadForward(pool *kernels.Pool, sh AttnShape, q, k, v []float32, segQ, segK []int32, probs, out []float32) {
	attentionForward(pool, sh, q, k, v, segQ, segK, probs, nil, out)
}

// AttentionHeadForwardLSE is AttentionHeadForward for training: it also stores each query
// row's log-sum-exp of its scaled, masked scores in lse (len Tq; -Inf for a row with no
// visible key), which is all AttentionHeadBackward needs besides q, k and v, so probs can
// be per-worker scratch rather than O(T^2) memory per head and layer.
func AttentionHeadForwardLSE(pool *kernels.Pool, sh AttnShape, q, k, v []float32, segQ, segK []int32, probs, lse, out []float32) {
	attentionForward(pool, sh, q, k, v, segQ, segK, probs, lse, out)
}

func attentionForward(pool *kernels.Pool, sh AttnShape, q, k, v []float32, segQ, segK []int32, probs, lse, out []float32) {
	past := sh.S - sh.Tq
	for r0 := 0; r0 < sh.Tq; r0 += attnBlock {
		r1 := min(r0+attnBlock, sh.Tq)
		end := past + r1 // keys visible to the block's last row
		p := probs[r0*sh.S:]
		pool.Sgemm(false, true, r1-r0, end, sh.HeadDim, sh.Scale, q[r0*sh.QStride:], sh.QStride, k, sh.KStride, 0, p, sh.S)
		for i := r0; i < r1; i++ {
			l := softmaxCausal(probs[i*sh.S:i*sh.S+end], past+i, segK, segOf(segQ, i))
			if lse != nil {
				lse[i] = l
			}
		}
		pool.Sgemm(false, false, r1-r0, sh.HeadDim, end, 1, p, sh.S, v, sh.VStride, 0, out[r0*sh.OStride:], sh.OStride)
	}
}

func segOf(seg []int32, i int) int32 {
	if seg == nil {
		return 0
	}
	return seg[i]
}

// maskRow sets row[j] to -Inf for keys j <= last of another segment and returns the
// visible prefix row[:last+1], zeroing the rest of row.
func maskRow(row []float32, last int, segK []int32, seg int32) []float32 {
	vis := row[:last+1]
	clear(row[last+1:])
	if segK != nil {
		negInf := float32(math.Inf(-1))
		for j := range vis {
			if segK[j] != seg {
				vis[j] = negInf
			}
		}
	}
	return vis
}

// softmaxCausal turns the scores in row into probabilities over the keys j <= last whose
// segment equals seg (all keys when segK is nil), with zeros elsewhere, and returns the
// row's log-sum-exp (-Inf when no key is visible).
func softmaxCausal(row []float32, last int, segK []int32, seg int32) float32 {
	vis := maskRow(row, last, segK, seg)
	mx := maxOf(vis)
	if math.IsInf(float64(mx), -1) {
		clear(vis)
		return mx
	}
	// Masked scores are -Inf and become exactly 0.
	sum := ExpShift(vis, vis, 1, -mx)
	scale(vis, 1/sum)
	return mx + float32(math.Log(float64(sum)))
}

// AttentionBackwardScratch is the scratch length AttentionHeadBackward needs for Tq
// queries against S keys.
func AttentionBackwardScratch(tq, s int) int { return 2 * min(tq, attnBlock) * s }

// AttentionHeadBackward back-propagates dout through AttentionHeadForwardLSE for one head,
// recomputing the probabilities from q, k and the saved lse a block of rows at a time. It
// overwrites dq and accumulates into dk and dv (several query heads share one key/value
// head under grouped-query attention, so the caller clears dk and dv once per group).
// dout, dq, dk and dv use the strides of out, q, k and v; segQ and segK must be those of
// the forward pass. scratch needs AttentionBackwardScratch(Tq, S) floats.
func AttentionHeadBackward(pool *kernels.Pool, sh AttnShape, q, k, v []float32, segQ, segK []int32, lse, dout, dq, dk, dv, scratch []float32) {
	past := sh.S - sh.Tq
	hd := sh.HeadDim
	blk := min(sh.Tq, attnBlock) * sh.S
	pbuf, dbuf := scratch[:blk], scratch[blk:2*blk]
	for r0 := 0; r0 < sh.Tq; r0 += attnBlock {
		r1 := min(r0+attnBlock, sh.Tq)
		rb := r1 - r0
		end := past + r1
		qb := q[r0*sh.QStride:]
		do := dout[r0*sh.OStride:]
		// Recompute P = exp(Scale*q k^T - lse) on the visible keys.
		pool.Sgemm(false, true, rb, end, hd, sh.Scale, qb, sh.QStride, k, sh.KStride, 0, pbuf, sh.S)
		for i := r0; i < r1; i++ {
			row := pbuf[(i-r0)*sh.S : (i-r0)*sh.S+end]
			vis := maskRow(row, past+i, segK, segOf(segQ, i))
			if math.IsInf(float64(lse[i]), -1) {
				clear(vis)
				continue
			}
			ExpShift(vis, vis, 1, -lse[i])
		}
		// dP = dO V^T and dV += P^T dO.
		pool.Sgemm(false, true, rb, end, hd, 1, do, sh.OStride, v, sh.VStride, 0, dbuf, sh.S)
		pool.Sgemm(true, false, end, hd, rb, 1, pbuf, sh.S, do, sh.OStride, 1, dv, sh.VStride)
		// dS = P * (dP - rowsum(P*dP)), with the score scale folded in.
		for i := 0; i < rb; i++ {
			pr := pbuf[i*sh.S : i*sh.S+end]
			dr := dbuf[i*sh.S : i*sh.S+end]
			d := dot(pr, dr)
			for j := softmaxGradVec(pr, dr, d, sh.Scale); j < len(pr); j++ {
				dr[j] = sh.Scale * pr[j] * (dr[j] - d)
			}
		}
		// dQ = dS K and dK += dS^T Q.
		pool.Sgemm(false, false, rb, hd, end, 1, dbuf, sh.S, k, sh.KStride, 0, dq[r0*sh.QStride:], sh.QStride)
		pool.Sgemm(true, false, end, hd, rb, 1, dbuf, sh.S, qb, sh.QStride, 1, dk, sh.KStride)
	}
}

package nn

import "math"

// LogProbForward computes, for each row r of logits (rows of vocab), the log-softmax
// probability of targets[r]: logp[r] = logits[r, t] - logsumexp(logits[r]), and saves the
// logsumexp in lse[r] for the backward pass. Rows whose target is negative are not scored:
// logp and lse are set to 0. Targets must be < vocab.
func LogProbForward(logits []float32, vocab int, targets []int32, logp, lse []float32) {
	for r, t := range targets {
		if t < 0 {
			logp[r], lse[r] = 0, 0
			continue
		}
		row := logits[r*vocab : (r+1)*vocab]
		l := logSumExp(row)
		lse[r] = l
		logp[r] = row[t] - l
	}
}

// logSumExp is log(sum e^x) using the row's own max for stability. It exponentiates in
// stack-sized chunks so the vector exp needs no caller scratch.
func logSumExp(row []float32) float32 {
	mx := maxOf(row)
	if math.IsInf(float64(mx), 0) {
		return mx
	}
	var buf [512]float32
	var s float32
	for lo := 0; lo < len(row); lo += len(buf) {
		hi := min(lo+len(buf), len(row))
		s += ExpShift(buf[:hi-lo], row[lo:hi], 1, -mx)
	}
	return mx + float32(math.Log(float64(s)))
}

// LogProbBackward writes dlogits = coef[r] * (onehot(targets[r]) - softmax(logits[r])) for
// every row, given coef[r] = dL/dlogp[r] and the lse saved by LogProbForward; rows with a
// negative target (or a zero coefficient) get zeros. dlogits may alias logits. With
// coef = -w/sum(w) this is weighted NLL; DPO and other sequence objectives supply their own
// per-token coefficients.
func LogProbBackward(logits []float32, vocab int, targets []int32, lse, coef, dlogits []float32) {
	for r, t := range targets {
		d := dlogits[r*vocab : (r+1)*vocab]
		c := coef[r]
		if t < 0 || c == 0 {
			clear(d)
			continue
		}
		row := logits[r*vocab : (r+1)*vocab]
		// -c*e^(v-l) = e^(v-l+log|c|), negated when c > 0 (a gradient-ascent coefficient).
		ExpShift(d, row, 1, -lse[r]+float32(math.Log(math.Abs(float64(c)))))
		if c > 0 {
			scale(d, -1)
		}
		d[t] += c
	}
}

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

// logSumExp is log(sum e^x) using the row's own max for stability.
func logSumExp(row []float32) float32 {
	mx := float32(math.Inf(-1))
	for _, v := range row {
		if v > mx {
			mx = v
		}
	}
	if math.IsInf(float64(mx), 0) {
		return mx
	}
	var s0, s1 float32
	i := 0
	for ; i+2 <= len(row); i += 2 {
		s0 += expf(row[i] - mx)
		s1 += expf(row[i+1] - mx)
	}
	for ; i < len(row); i++ {
		s0 += expf(row[i] - mx)
	}
	return mx + float32(math.Log(float64(s0+s1)))
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
		l := lse[r]
		for j, v := range row {
			d[j] = -c * expf(v-l)
		}
		d[t] += c
	}
}

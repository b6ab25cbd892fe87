package objectives

import "math"

// Plain float64 reference implementations, written independently of the
// gorgonia graphs, used as the expected values in the tests.

// refSoftplus is log(1 + e^x), computed stably for any x.
func refSoftplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}

// refNegLogSigmoid is -log sigmoid(x).
func refNegLogSigmoid(x float64) float64 { return refSoftplus(-x) }

func refSigmoid(x float64) float64 {
	if x >= 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

type refBT struct {
	loss, bt, center, acc, meanMargin float64
	grad                              []float64
}

func refBradleyTerry(rewards []float64, pairs []Pair, eta float64, perRow bool) refBT {
	w := make([]float64, len(pairs))
	if perRow {
		count := map[int]int{}
		for _, p := range pairs {
			count[p.Row]++
		}
		for i, p := range pairs {
			w[i] = 1 / float64(len(count)) / float64(count[p.Row])
		}
	} else {
		for i := range w {
			w[i] = 1 / float64(len(pairs))
		}
	}
	out := refBT{grad: make([]float64, len(rewards))}
	for i, p := range pairs {
		rb, rw := rewards[p.Better], rewards[p.Worse]
		z := rb - rw - p.Margin
		out.bt += w[i] * refNegLogSigmoid(z)
		s := rb + rw
		out.center += w[i] * s * s
		// d/dz -log sigmoid(z) = -sigmoid(-z)
		g := -w[i] * refSigmoid(-z)
		out.grad[p.Better] += g + eta*2*w[i]*s
		out.grad[p.Worse] += -g + eta*2*w[i]*s
		if rb > rw {
			out.acc++
		}
		out.meanMargin += rb - rw
	}
	out.loss = out.bt + eta*out.center
	out.acc /= float64(len(pairs))
	out.meanMargin /= float64(len(pairs))
	return out
}

type refDPOOut struct {
	loss, dpo, nll                    float64
	rewardsChosen, rewardsRejected    float64
	acc, logpsChosen, logpsRejected   float64
	gradChosen, gradRejected, gradAll []float64
}

func refDPO(o DPOOptions, b DPOBatch) refDPOOut {
	n := float64(b.Len())
	out := refDPOOut{
		gradChosen:   make([]float64, b.Len()),
		gradRejected: make([]float64, b.Len()),
		gradAll:      make([]float64, b.Len()),
	}
	totalTok := 0.0
	for _, c := range b.ChosenTokens {
		totalTok += float64(c)
	}
	for i := range b.PolicyChosen {
		rc := o.Beta * (b.PolicyChosen[i] - b.ReferenceChosen[i])
		rr := o.Beta * (b.PolicyRejected[i] - b.ReferenceRejected[i])
		x := rc - rr
		out.dpo += refNegLogSigmoid(x) / n
		g := -o.Beta * refSigmoid(-x) / n
		out.gradChosen[i] = g
		out.gradRejected[i] = -g
		switch o.NLLNorm {
		case NLLPerSequenceMean, "":
			out.nll += -b.PolicyChosenAll[i] / float64(b.ChosenTokens[i]) / n
			out.gradAll[i] = -o.NLLCoef / float64(b.ChosenTokens[i]) / n
		case NLLBatchTokenMean:
			out.nll += -b.PolicyChosenAll[i] / totalTok
			out.gradAll[i] = -o.NLLCoef / totalTok
		case NLLPerSequenceSum:
			out.nll += -b.PolicyChosenAll[i] / n
			out.gradAll[i] = -o.NLLCoef / n
		}
		out.rewardsChosen += rc / n
		out.rewardsRejected += rr / n
		if rc > rr {
			out.acc += 1 / n
		}
		out.logpsChosen += b.PolicyChosen[i] / n
		out.logpsRejected += b.PolicyRejected[i] / n
	}
	out.loss = out.dpo + o.NLLCoef*out.nll
	return out
}

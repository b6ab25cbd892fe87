package transformer

import (
	"errors"
	"fmt"
	"math"

	"github.com/posttrain/posttrain/kernels/nn"
)

// NewGrads allocates a zeroed gradient buffer with the model's parameter layout.
func (m *Model) NewGrads() *Params { return NewParams(m.Config) }

// Init fills the weights with Hugging Face's LlamaModel initialisation from seed.
func (m *Model) Init(seed uint64) { m.W.InitRandom(m.Config, seed) }

// Backward accumulates (+=) into grads the gradient of a loss L given dOut: dL/dLogProbs
// (len B*T) for a causal LM, or dL/dRewards (len B) for a sequence classifier. It must
// follow a Forward of the same batch on the same workspace; ws.Logits and ws.LogProbs are
// left unchanged. With tied embeddings both uses accumulate into grads.Embed.
func (m *Model) Backward(ws *Workspace, b *Batch, dOut []float32, grads *Params) error {
	if ws == nil || b == nil || grads == nil {
		return errors.New("transformer: nil workspace, batch or grads")
	}
	if !ws.ready || ws.b != b || ws.m != m || ws.bt != b.T || ws.n != b.B*b.T {
		return errors.New("transformer: Backward must follow a Forward of the same batch on the same workspace")
	}
	d := ws.dims
	if err := checkLayout(grads, m.Config, "grads"); err != nil {
		return err
	}
	want := ws.n
	if d.classifier {
		want = b.B
	}
	if len(dOut) != want {
		return fmt.Errorf("transformer: len(dOut)=%d, want %d", len(dOut), want)
	}
	n, h := ws.n, d.hidden
	qd, qkvd, in := d.heads*d.headDim, d.qkvDim(), d.inter
	pool := m.Pool
	ws.ensureBackward()
	ws.dOut = dOut

	// Head: gradient with respect to the final normed hidden states, into ws.da.
	daf := ws.da[:n*h]
	if d.classifier {
		clear(daf)
		for r := 0; r < b.B; r++ {
			row := r*b.T + int(b.Last[r])
			c := dOut[r]
			afr := ws.af[row*h : (row+1)*h]
			dr := daf[row*h : (row+1)*h]
			for i := range dr {
				dr[i] = c * m.W.Score[i]
				grads.Score[i] += c * afr[i]
			}
		}
	} else {
		// In chunks of rows, so dlogits needs headRows*vocab floats rather than N*vocab.
		for r0 := 0; r0 < n; r0 += ws.headRows {
			rows := min(ws.headRows, n-r0)
			ws.chunk0 = r0
			ws.par(opLogProbBack, rows)
			dl := ws.dLogits[:rows*d.vocab]
			pool.Sgemm(true, false, d.vocab, h, rows, 1, dl, d.vocab, ws.af[r0*h:], h, 1, grads.LMHead, h)
			pool.Sgemm(false, false, rows, h, d.vocab, 1, dl, d.vocab, m.W.LMHead, h, 0, daf[r0*h:], h)
		}
	}
	clear(ws.dx[:n*h])
	ws.normBack(ws.xf, m.W.Norm, ws.rinvF, daf, grads.Norm)

	for l := d.layers - 1; l >= 0; l-- {
		la := &ws.layers[l]
		w := &m.W.Layers[l]
		gw := &grads.Layers[l]
		ws.layer = l
		// MLP: x_{l+1} = xm + down(silu(gate(a2)) * up(a2)), a2 = norm2(xm).
		pool.Sgemm(false, false, n, in, h, 1, ws.dx, h, w.Down, in, 0, ws.dact, in)
		pool.Sgemm(true, false, h, in, n, 1, ws.dx, h, la.act, in, 1, gw.Down, in)
		ws.par(opSwiGLUBack, n)
		pool.Sgemm(false, false, n, h, 2*in, 1, ws.dgu, 2*in, w.gateUp, h, 0, ws.da, h)
		pool.Sgemm(true, false, 2*in, h, n, 1, ws.dgu, 2*in, la.a2, h, 1, gw.gateUp, h)
		ws.normBack(la.xm, w.PostAttnNorm, la.rinv2, ws.da, gw.PostAttnNorm)
		// Attention: xm = x + o_proj(attn(rope(q(a1)), rope(k(a1)), v(a1))), a1 = norm1(x).
		pool.Sgemm(false, false, n, qd, h, 1, ws.dx, h, w.O, qd, 0, ws.do, qd)
		pool.Sgemm(true, false, h, qd, n, 1, ws.dx, h, la.o, qd, 1, gw.O, qd)
		ws.par(opAttnBack, ws.workers)
		ws.par(opRoPEBack, n)
		pool.Sgemm(false, false, n, h, qkvd, 1, ws.dqkv, qkvd, w.qkv, h, 0, ws.da, h)
		pool.Sgemm(true, false, qkvd, h, n, 1, ws.dqkv, qkvd, la.a1, h, 1, gw.qkv, h)
		ws.normBack(la.x, w.InputNorm, la.rinv1, ws.da, gw.InputNorm)
	}
	// Embedding: a scatter-add, serial because repeated tokens hit the same row.
	nn.EmbeddingBackward(grads.Embed, h, b.Tokens, ws.dx[:n*h])
	return nil
}

// normBack adds the RMSNorm backward of dy (rows of ws.n) into ws.dx, and its weight
// gradient into dw, splitting rows over the workers with a private dw each.
func (ws *Workspace) normBack(x, w, rinv, dy, dw []float32) {
	ws.normIn, ws.normW, ws.normRinv, ws.normDy = x, w, rinv, dy
	ws.par(opNormBack, ws.workers)
	for _, part := range ws.dwPart {
		for i, v := range part {
			dw[i] += v
		}
	}
}

// WeightedNLL runs Forward on a causal LM and returns the weighted negative log-likelihood
// -sum(w*logp)/sum(w) over the tokens with a non-negative target (weights has len B*T).
// When grads is non-nil it also runs Backward, accumulating the loss's gradient into grads.
func (m *Model) WeightedNLL(ws *Workspace, b *Batch, weights []float32, grads *Params) (float64, error) {
	if m.Config.IsSequenceClassifier() {
		return 0, errors.New("transformer: WeightedNLL needs a causal LM, not a sequence classifier")
	}
	if err := m.Forward(ws, b); err != nil {
		return 0, err
	}
	n := ws.n
	if len(weights) != n {
		return 0, fmt.Errorf("transformer: len(weights)=%d, want B*T=%d", len(weights), n)
	}
	var sw, sl float64
	for i, t := range b.Targets {
		if t < 0 {
			continue
		}
		w := float64(weights[i])
		if w < 0 || math.IsNaN(w) || math.IsInf(w, 0) {
			return 0, fmt.Errorf("transformer: weights[%d]=%g must be finite and >= 0", i, w)
		}
		sw += w
		sl += w * float64(ws.LogProbs[i])
	}
	if sw == 0 {
		return 0, errors.New("transformer: WeightedNLL: no scored token has a positive weight")
	}
	loss := -sl / sw
	if grads == nil {
		return loss, nil
	}
	coef := ws.coef[:n]
	for i, t := range b.Targets {
		coef[i] = 0
		if t >= 0 {
			coef[i] = float32(-float64(weights[i]) / sw)
		}
	}
	return loss, m.Backward(ws, b, coef, grads)
}

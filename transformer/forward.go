package transformer

import (
	"errors"
	"fmt"

	"github.com/posttrain/posttrain/kernels/nn"
)

// checkLayout reports whether p has the tensors and sizes of cfg, as NewParams lays them
// out (the fused q/k/v and gate/up views included).
func checkLayout(p *Params, cfg Config, what string) error {
	if p == nil {
		return fmt.Errorf("transformer: model has no %s", what)
	}
	d := dimsOf(cfg)
	h := d.hidden
	if len(p.Layers) != d.layers || len(p.Embed) != d.vocab*h || len(p.Norm) != h {
		return fmt.Errorf("transformer: %s are not laid out for this config (use NewParams)", what)
	}
	for l, ly := range p.Layers {
		if len(ly.qkv) != d.qkvDim()*h || len(ly.gateUp) != 2*d.inter*h || len(ly.O) != h*d.heads*d.headDim ||
			len(ly.Down) != h*d.inter || len(ly.InputNorm) != h || len(ly.PostAttnNorm) != h {
			return fmt.Errorf("transformer: %s of layer %d are not laid out for this config (use NewParams)", what, l)
		}
	}
	if d.classifier && len(p.Score) != h {
		return fmt.Errorf("transformer: %s lack score.weight [1,%d] for a sequence classifier", what, h)
	}
	if !d.classifier && len(p.LMHead) != d.vocab*h {
		return fmt.Errorf("transformer: %s lack lm_head.weight [%d,%d]", what, d.vocab, h)
	}
	return nil
}

// checkBatch validates b against the model and workspace, naming the offending field.
func (m *Model) checkBatch(ws *Workspace, b *Batch) error {
	if ws == nil || b == nil {
		return errors.New("transformer: nil workspace or batch")
	}
	if ws.err != nil {
		return ws.err
	}
	if m.Pool == nil {
		return errors.New("transformer: model has no kernel pool")
	}
	d := dimsOf(m.Config)
	if d != ws.dims {
		return errors.New("transformer: workspace was built for a different model configuration")
	}
	if err := checkLayout(m.W, m.Config, "weights"); err != nil {
		return err
	}
	if b.B <= 0 || b.T <= 0 {
		return fmt.Errorf("batch: B=%d and T=%d must be positive", b.B, b.T)
	}
	if b.B > ws.MaxB {
		return fmt.Errorf("batch: B=%d exceeds the workspace's MaxB=%d", b.B, ws.MaxB)
	}
	if b.T > d.maxPos {
		return fmt.Errorf("batch: T=%d exceeds max_position_embeddings=%d", b.T, d.maxPos)
	}
	if b.T > ws.MaxT {
		return fmt.Errorf("batch: T=%d exceeds the workspace's MaxT=%d", b.T, ws.MaxT)
	}
	n := b.B * b.T
	if len(b.Tokens) != n {
		return fmt.Errorf("batch: len(Tokens)=%d, want B*T=%d", len(b.Tokens), n)
	}
	for i, t := range b.Tokens {
		if t < 0 || int(t) >= d.vocab {
			return fmt.Errorf("batch: Tokens[%d]=%d (row %d, position %d) is outside the vocabulary [0,%d)", i, t, i/b.T, i%b.T, d.vocab)
		}
	}
	if b.Positions != nil {
		if len(b.Positions) != n {
			return fmt.Errorf("batch: len(Positions)=%d, want B*T=%d", len(b.Positions), n)
		}
		for i, p := range b.Positions {
			if p < 0 || int(p) >= d.maxPos {
				return fmt.Errorf("batch: Positions[%d]=%d is outside [0,max_position_embeddings=%d)", i, p, d.maxPos)
			}
		}
	}
	if b.Segments != nil && len(b.Segments) != n {
		return fmt.Errorf("batch: len(Segments)=%d, want B*T=%d", len(b.Segments), n)
	}
	if d.classifier {
		if len(b.Last) != b.B {
			return fmt.Errorf("batch: len(Last)=%d, want B=%d for a sequence classifier", len(b.Last), b.B)
		}
		for r, l := range b.Last {
			if l < 0 || int(l) >= b.T {
				return fmt.Errorf("batch: Last[%d]=%d is outside [0,T=%d)", r, l, b.T)
			}
		}
		return nil
	}
	if len(b.Targets) != n {
		return fmt.Errorf("batch: len(Targets)=%d, want B*T=%d for a causal LM", len(b.Targets), n)
	}
	for i, t := range b.Targets {
		if int(t) >= d.vocab {
			return fmt.Errorf("batch: Targets[%d]=%d is outside the vocabulary [0,%d) (use a negative target to skip a token)", i, t, d.vocab)
		}
	}
	return nil
}

// Forward runs the model on b. A causal LM fills ws.Logits (B*T*vocab) and ws.LogProbs
// (log p(Targets[i]), 0 where the target is negative); a sequence classifier fills
// ws.Rewards[r] = score · norm(h)[r, Last[r]]. The activations stay in ws for Backward.
func (m *Model) Forward(ws *Workspace, b *Batch) error {
	if err := m.checkBatch(ws, b); err != nil {
		return err
	}
	d := ws.dims
	ws.m, ws.b, ws.bt, ws.n = m, b, b.T, b.B*b.T
	ws.ready = false
	n, h := ws.n, d.hidden
	qd, qkvd := d.heads*d.headDim, d.qkvDim()
	pool := m.Pool
	ws.bPos = b.Positions
	if ws.bPos == nil {
		ws.bPos = ws.pos[:n]
		for i := range ws.bPos {
			ws.bPos[i] = int32(i % b.T)
		}
	}

	ws.par(opEmbed, n)
	for l := range ws.layers {
		la := &ws.layers[l]
		w := &m.W.Layers[l]
		ws.layer = l
		ws.par(opNorm1, n)
		pool.Sgemm(false, true, n, qkvd, h, 1, la.a1, h, w.qkv, h, 0, la.qkv, qkvd)
		ws.par(opRoPE, n)
		ws.par(opAttn, ws.workers)
		copy(la.xm[:n*h], la.x[:n*h])
		pool.Sgemm(false, true, n, h, qd, 1, la.o, qd, w.O, qd, 1, la.xm, h)
		ws.par(opNorm2, n)
		pool.Sgemm(false, true, n, 2*d.inter, h, 1, la.a2, h, w.gateUp, h, 0, la.gu, 2*d.inter)
		ws.par(opSwiGLU, n)
		next := ws.xf
		if l+1 < len(ws.layers) {
			next = ws.layers[l+1].x
		}
		copy(next[:n*h], la.xm[:n*h])
		pool.Sgemm(false, true, n, h, d.inter, 1, la.act, d.inter, w.Down, d.inter, 1, next, h)
	}
	ws.par(opNormF, n)
	if d.classifier {
		for r := 0; r < b.B; r++ {
			row := r*b.T + int(b.Last[r])
			ws.Rewards[r] = dot32(m.W.Score, ws.af[row*h:(row+1)*h])
		}
	} else {
		pool.Sgemm(false, true, n, d.vocab, h, 1, ws.af, h, m.W.LMHead, h, 0, ws.Logits, d.vocab)
		ws.par(opLogProb, n)
	}
	ws.ready = true
	return nil
}

// dot32 is a float32 dot product accumulated in float64 (used once per row, off the hot path).
func dot32(x, y []float32) float32 {
	var s float64
	for i, v := range x {
		s += float64(v) * float64(y[i])
	}
	return float32(s)
}

// par runs op on the pool over [0,n) (rows, elements or worker ids, depending on op).
func (ws *Workspace) par(o op, n int) {
	ws.op = o
	ws.m.Pool.Parallel(n, ws.run)
}

// work runs part [lo,hi) of the current op. It is the one func value handed to the pool,
// made once in NewWorkspace, so dispatching a kernel allocates nothing.
func (ws *Workspace) work(lo, hi int) {
	d := ws.dims
	h := d.hidden
	qd, qkvd := d.heads*d.headDim, d.qkvDim()
	la := &ws.layers[ws.layer]
	w := &ws.m.W.Layers[ws.layer]
	switch ws.op {
	case opEmbed:
		nn.EmbeddingForward(ws.m.W.Embed, h, ws.b.Tokens[lo:hi], ws.layers[0].x[lo*h:hi*h])
	case opNorm1:
		nn.RMSNormForward(la.x[lo*h:hi*h], w.InputNorm, la.a1[lo*h:hi*h], la.rinv1[lo:hi], h, d.eps)
	case opNorm2:
		nn.RMSNormForward(la.xm[lo*h:hi*h], w.PostAttnNorm, la.a2[lo*h:hi*h], la.rinv2[lo:hi], h, d.eps)
	case opNormF:
		nn.RMSNormForward(ws.xf[lo*h:hi*h], ws.m.W.Norm, ws.af[lo*h:hi*h], ws.rinvF[lo:hi], h, d.eps)
	case opRoPE:
		ws.rope.Forward(la.qkv[lo*qkvd:hi*qkvd], qkvd, d.heads, ws.bPos[lo:hi])
		ws.rope.Forward(la.qkv[lo*qkvd+qd:hi*qkvd], qkvd, d.kvHeads, ws.bPos[lo:hi])
	case opRoPEBack:
		ws.rope.Backward(ws.dqkv[lo*qkvd:hi*qkvd], qkvd, d.heads, ws.bPos[lo:hi])
		ws.rope.Backward(ws.dqkv[lo*qkvd+qd:hi*qkvd], qkvd, d.kvHeads, ws.bPos[lo:hi])
	case opSwiGLU:
		in := d.inter
		for r := lo; r < hi; r++ {
			gu := la.gu[r*2*in : (r+1)*2*in]
			nn.SwiGLUForward(gu[:in], gu[in:], la.act[r*in:(r+1)*in])
		}
	case opSwiGLUBack:
		in := d.inter
		for r := lo; r < hi; r++ {
			gu, dgu := la.gu[r*2*in:(r+1)*2*in], ws.dgu[r*2*in:(r+1)*2*in]
			nn.SwiGLUBackward(gu[:in], gu[in:], ws.dact[r*in:(r+1)*in], dgu[:in], dgu[in:])
		}
	case opLogProb:
		nn.LogProbForward(ws.Logits[lo*d.vocab:hi*d.vocab], d.vocab, ws.b.Targets[lo:hi], ws.LogProbs[lo:hi], ws.lse[lo:hi])
	case opLogProbBack: // rows [lo,hi) of the chunk starting at token chunk0
		r0, r1 := ws.chunk0+lo, ws.chunk0+hi
		nn.LogProbBackward(ws.Logits[r0*d.vocab:r1*d.vocab], d.vocab, ws.b.Targets[r0:r1], ws.lse[r0:r1], ws.dOut[r0:r1], ws.dLogits[lo*d.vocab:hi*d.vocab])
	case opAttn, opAttnBack:
		items := ws.b.B * d.kvHeads
		for wk := lo; wk < hi; wk++ {
			ilo, ihi := chunk(items, ws.workers, wk)
			for it := ilo; it < ihi; it++ {
				ws.attnItem(la, it/d.kvHeads, it%d.kvHeads, wk)
			}
		}
	case opNormBack:
		for wk := lo; wk < hi; wk++ {
			rlo, rhi := chunk(ws.n, ws.workers, wk)
			dw := ws.dwPart[wk]
			clear(dw)
			nn.RMSNormBackward(ws.normIn[rlo*h:rhi*h], ws.normW, ws.normRinv[rlo:rhi], ws.normDy[rlo*h:rhi*h], ws.dx[rlo*h:rhi*h], dw, h)
		}
	}
}

// attnItem runs attention (forward or backward, per ws.op) for batch row r and key/value
// head g, i.e. for the query heads that share g, on worker wk's scratch.
func (ws *Workspace) attnItem(la *layerActs, r, g, wk int) {
	d := ws.dims
	T, hd := ws.bt, d.headDim
	qd, kvd, qkvd := d.heads*d.headDim, d.kvHeads*d.headDim, d.qkvDim()
	sh := nn.AttnShape{Tq: T, S: T, HeadDim: hd, QStride: qkvd, KStride: qkvd, VStride: qkvd, OStride: qd, Scale: d.scale}
	var seg []int32
	if ws.b.Segments != nil {
		seg = ws.b.Segments[r*T : (r+1)*T]
	}
	row := r * T * qkvd
	kOff, vOff := row+qd+g*hd, row+qd+kvd+g*hd
	rep := d.heads / d.kvHeads
	pool := ws.m.Pool
	if ws.op == opAttnBack {
		for t := 0; t < T; t++ {
			clear(ws.dqkv[kOff+t*qkvd : kOff+t*qkvd+hd])
			clear(ws.dqkv[vOff+t*qkvd : vOff+t*qkvd+hd])
		}
	}
	for hh := g * rep; hh < (g+1)*rep; hh++ {
		qOff, oOff := row+hh*hd, r*T*qd+hh*hd
		lse := la.lse[(r*d.heads+hh)*T : (r*d.heads+hh+1)*T]
		if ws.op == opAttn {
			nn.AttentionHeadForwardLSE(pool, sh, la.qkv[qOff:], la.qkv[kOff:], la.qkv[vOff:], seg, seg, ws.attn[wk], lse, la.o[oOff:])
		} else {
			nn.AttentionHeadBackward(pool, sh, la.qkv[qOff:], la.qkv[kOff:], la.qkv[vOff:], seg, seg, lse, ws.do[oOff:], ws.dqkv[qOff:], ws.dqkv[kOff:], ws.dqkv[vOff:], ws.attn[wk])
		}
	}
}

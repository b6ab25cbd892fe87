package inference

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/posttrain/posttrain/kernels/nn"
)

// op names the kernel Engine.work runs on the pool's workers.
type op int

const (
	opNorm1 op = iota
	opNorm2
	opRoPE
	opSwiGLU
	opPrefillAttn
	opDecodeAttn
	opSample
)

// Prefill runs prompt through the model once, filling a new Prefix with its keys and
// values and the next-token logits. Release it with ReleasePrefix when its sequences end.
func (e *Engine) Prefill(ctx context.Context, prompt []int32) (*Prefix, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := len(prompt)
	if n == 0 {
		return nil, errors.New("inference: empty prompt")
	}
	if n > e.d.maxPos {
		return nil, fmt.Errorf("inference: prompt of %d tokens exceeds max_position_embeddings=%d", n, e.d.maxPos)
	}
	if err := e.checkTokens(prompt, "prompt token"); err != nil {
		return nil, fmt.Errorf("inference: %w", err)
	}
	start := time.Now()
	e.ensureRows(n)
	e.ensurePrefillScratch(n)
	p := e.takePrefix(n)
	p.tokens = append(p.tokens[:0], prompt...)
	d := &e.d
	h := d.hidden
	nn.EmbeddingForward(e.m.W.Embed, h, prompt, e.x[:n*h])
	for i := range n {
		e.pos[i] = int32(i)
	}
	e.n = n
	for l := range e.w {
		e.layer = l
		w := &e.w[l]
		e.par(opNorm1, n)
		e.pool.Sgemm(false, false, n, d.qkvDim, h, 1, e.a, h, w.qkvT, d.qkvLd, 0, e.qkv, d.qkvDim)
		e.par(opRoPE, n)
		e.par(opPrefillAttn, d.heads)
		// The rotated keys (transposed per head) and the values go into the prefix cache.
		kt, vc := p.keysT(l), p.values(l)
		for i := range n {
			row := e.qkv[i*d.qkvDim:]
			for c, v := range row[d.qDim : d.qDim+d.kvDim] {
				kt[c*n+i] = v // c = g*headDim + dim, so [g][dim][i]
			}
			copy(vc[i*d.kvDim:(i+1)*d.kvDim], row[d.qDim+d.kvDim:d.qDim+2*d.kvDim])
		}
		e.mlp(w, n)
	}
	// Only the last position's logits are needed to sample the first new token.
	last := (n - 1) * h
	nn.RMSNormForward(e.x[last:last+h], e.m.W.Norm, e.a[:h], nil, h, d.eps)
	e.pool.Sgemm(false, false, 1, d.vocab, h, 1, e.a, h, e.lmHeadT, d.vocabLd, 0, p.logits, d.vocab)
	e.stats.Prompts++
	e.stats.PrefillTokens += int64(n)
	e.stats.PrefillTime += time.Since(start)
	return p, nil
}

// mlp finishes a block for n rows: attention output projection into the residual, then
// the SwiGLU MLP into the residual.
func (e *Engine) mlp(w *layerWeights, n int) {
	d := &e.d
	h := d.hidden
	e.pool.Sgemm(false, false, n, h, d.qDim, 1, e.o, d.qDim, w.oT, d.hLd, 1, e.x, h)
	e.par(opNorm2, n)
	e.pool.Sgemm(false, false, n, 2*d.inter, h, 1, e.a, h, w.gateUpT, d.guLd, 0, e.gu, 2*d.inter)
	e.par(opSwiGLU, n)
	e.pool.Sgemm(false, false, n, h, d.inter, 1, e.act, d.inter, w.downT, d.hLd, 1, e.x, h)
}

// Decode feeds tokens[i] to seqs[i] (one token each, at the sequence's next position) and
// returns the next-token logits, len(seqs) rows of vocab, valid until the next call.
// Sequences sharing a prefix should be adjacent in seqs: each run of them reads the
// prefix's keys and values with one matmul per key/value head. It allocates nothing.
func (e *Engine) Decode(seqs []*Sequence, tokens []int32) ([]float32, error) {
	m := len(seqs)
	switch {
	case m == 0:
		return nil, errors.New("inference: decode of zero sequences")
	case m > e.maxBatch:
		return nil, fmt.Errorf("inference: decode of %d sequences exceeds MaxBatch=%d", m, e.maxBatch)
	case len(tokens) != m:
		return nil, fmt.Errorf("inference: %d tokens for %d sequences", len(tokens), m)
	}
	if err := e.checkTokens(tokens, "decode token"); err != nil {
		return nil, fmt.Errorf("inference: %w", err)
	}
	e.groups = e.groups[:0]
	e.step++
	for i, s := range seqs {
		switch {
		case s == nil || s.kv == nil:
			return nil, fmt.Errorf("inference: sequence %d is nil or released", i)
		case s.n >= s.cap:
			return nil, fmt.Errorf("inference: sequence %d is full (%d tokens)", i, s.cap)
		case s.step == e.step:
			return nil, fmt.Errorf("inference: sequence %d appears twice in one decode step", i)
		}
		s.step = e.step
		e.pos[i] = int32(s.Position())
		if k := len(e.groups); k > 0 && e.groups[k-1].prefix == s.prefix {
			e.groups[k-1].hi = i + 1
		} else {
			e.groups = append(e.groups, group{lo: i, hi: i + 1, prefix: s.prefix})
		}
	}
	start := time.Now()
	d := &e.d
	h := d.hidden
	e.seqs = append(e.seqs[:0], seqs...)
	e.n = m
	nn.EmbeddingForward(e.m.W.Embed, h, tokens, e.x[:m*h])
	for l := range e.w {
		e.layer = l
		w := &e.w[l]
		e.par(opNorm1, m)
		e.pool.Sgemm(false, false, m, d.qkvDim, h, 1, e.a, h, w.qkvT, d.qkvLd, 0, e.qkv, d.qkvDim)
		e.par(opRoPE, m)
		for i, s := range seqs {
			row := e.qkv[i*d.qkvDim:]
			kt := s.keysT(l)
			for c, v := range row[d.qDim : d.qDim+d.kvDim] {
				kt[c*s.cap+s.n] = v
			}
			at := s.n * d.kvDim
			copy(s.values(l)[at:at+d.kvDim], row[d.qDim+d.kvDim:d.qDim+2*d.kvDim])
		}
		e.par(opDecodeAttn, len(e.groups)*d.kvHeads)
		e.mlp(w, m)
	}
	for _, s := range seqs {
		s.n++
	}
	nn.RMSNormForward(e.x[:m*h], e.m.W.Norm, e.a[:m*h], nil, h, d.eps)
	logits := e.logits[:m*d.vocab]
	e.pool.Sgemm(false, false, m, d.vocab, h, 1, e.a, h, e.lmHeadT, d.vocabLd, 0, logits, d.vocab)
	clear(e.seqs)
	e.seqs = e.seqs[:0]
	e.stats.DecodeTokens += int64(m)
	e.stats.DecodeTime += time.Since(start)
	return logits, nil
}

func (e *Engine) checkTokens(ids []int32, what string) error {
	for i, t := range ids {
		if t < 0 || int(t) >= e.d.vocab {
			return fmt.Errorf("%s %d at index %d is outside the vocabulary [0,%d)", what, t, i, e.d.vocab)
		}
	}
	return nil
}

// par runs op over [0,n) on the pool.
func (e *Engine) par(o op, n int) {
	e.op = o
	e.slot.Store(0)
	e.pool.Parallel(n, e.run)
}

// work runs part [lo,hi) of the current op. It is the one func value handed to the pool,
// made once in NewEngine, so dispatching allocates nothing.
func (e *Engine) work(lo, hi int) {
	d := &e.d
	h := d.hidden
	switch e.op {
	case opNorm1:
		nn.RMSNormForward(e.x[lo*h:hi*h], e.w[e.layer].inputNorm, e.a[lo*h:hi*h], nil, h, d.eps)
	case opNorm2:
		nn.RMSNormForward(e.x[lo*h:hi*h], e.w[e.layer].postNorm, e.a[lo*h:hi*h], nil, h, d.eps)
	case opRoPE:
		q := e.qkv[lo*d.qkvDim : hi*d.qkvDim]
		e.rope.Forward(q, d.qkvDim, d.heads, e.pos[lo:hi])
		e.rope.Forward(q[d.qDim:], d.qkvDim, d.kvHeads, e.pos[lo:hi])
	case opSwiGLU:
		in := d.inter
		for r := lo; r < hi; r++ {
			g := e.gu[r*2*in : (r*2+1)*in]
			u := e.gu[(r*2+1)*in : (r*2+2)*in]
			nn.SwiGLUForward(g, u, e.act[r*in:(r+1)*in])
		}
	case opPrefillAttn:
		e.prefillAttn(lo, hi)
	case opDecodeAttn:
		e.decodeAttn(lo, hi)
	case opSample:
		e.sampleRows(lo, hi)
	}
}

// workerScratch hands each concurrent part of the current op its own scratch slot. The
// pool runs at most Workers() parts at once, and par resets the counter before each op.
func (e *Engine) workerScratch() []float32 {
	return e.scratch[e.slot.Add(1)-1]
}

// prefillAttn runs causal attention over the prompt for heads [lo,hi), reading the
// rotated keys and the values straight from the fused q/k/v rows.
func (e *Engine) prefillAttn(lo, hi int) {
	d := &e.d
	n := e.n
	probs := e.workerScratch()[:n*n]
	rep := d.heads / d.kvHeads
	sh := nn.AttnShape{Tq: n, S: n, HeadDim: d.headDim, QStride: d.qkvDim, KStride: d.qkvDim, VStride: d.qkvDim, OStride: d.qDim, Scale: d.scale}
	for hh := lo; hh < hi; hh++ {
		g := hh / rep
		k := e.qkv[d.qDim+g*d.headDim:]
		v := e.qkv[d.qDim+d.kvDim+g*d.headDim:]
		nn.AttentionHeadForward(e.pool, sh, e.qkv[hh*d.headDim:], k, v, nil, nil, probs, e.o[hh*d.headDim:])
	}
}

// decodeAttn runs one query per row for items [lo,hi) of (row group, key/value head). The
// rep query heads of every row in a group read the same prefix, so their scores against
// it and the weighted sum of its values are one matmul each; each row's own suffix takes
// two small matmuls. Keys are stored transposed, so every product is row-major.
func (e *Engine) decodeAttn(lo, hi int) {
	d := &e.d
	hd := d.headDim
	rep := d.heads / d.kvHeads
	scratch := e.workerScratch()
	l := e.layer
	for it := lo; it < hi; it++ {
		gr := e.groups[it/d.kvHeads]
		g := it % d.kvHeads
		p := gr.prefix
		rows := gr.hi - gr.lo
		R := rows * rep // query rows: (row, head within the group)
		ld := p.n       // score row stride: prefix plus the longest suffix
		for r := gr.lo; r < gr.hi; r++ {
			ld = max(ld, p.n+e.seqs[r].n+1)
		}
		qp := scratch[:R*hd]
		op := scratch[R*hd : 2*R*hd]
		sc := scratch[2*R*hd : 2*R*hd+R*ld]
		for r := range rows {
			src := e.qkv[(gr.lo+r)*d.qkvDim+g*rep*hd:]
			copy(qp[r*rep*hd:(r+1)*rep*hd], src[:rep*hd])
		}
		e.pool.Sgemm(false, false, R, p.n, hd, d.scale, qp, hd, p.keysT(l)[g*hd*p.n:], p.n, 0, sc, ld)
		for r := range rows {
			s := e.seqs[gr.lo+r]
			cur := s.n + 1 // suffix keys including this step's
			e.pool.Sgemm(false, false, rep, cur, hd, d.scale, qp[r*rep*hd:], hd, s.keysT(l)[g*hd*s.cap:], s.cap, 0, sc[r*rep*ld+p.n:], ld)
			for j := range rep {
				softmax(sc[(r*rep+j)*ld : (r*rep+j)*ld+p.n+cur])
			}
		}
		e.pool.Sgemm(false, false, R, hd, p.n, 1, sc, ld, p.values(l)[g*hd:], d.kvDim, 0, op, hd)
		for r := range rows {
			s := e.seqs[gr.lo+r]
			e.pool.Sgemm(false, false, rep, hd, s.n+1, 1, sc[r*rep*ld+p.n:], ld, s.values(l)[g*hd:], d.kvDim, 1, op[r*rep*hd:], hd)
			copy(e.o[(gr.lo+r)*d.qDim+g*rep*hd:][:rep*hd], op[r*rep*hd:(r+1)*rep*hd])
		}
	}
}

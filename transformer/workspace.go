package transformer

import (
	"fmt"
	"math"

	"github.com/posttrain/posttrain/kernels/nn"
)

// layerActs are the activations of one decoder block that the backward pass reads.
type layerActs struct {
	x     []float32 // block input (residual stream), N*H
	rinv1 []float32 // 1/rms of x per token, N
	a1    []float32 // input_layernorm(x), N*H
	qkv   []float32 // rotated queries | rotated keys | values per token, N*(qDim+2*kvDim)
	lse   []float32 // attention log-sum-exp per (row, head, query), B*heads*T
	o     []float32 // attention output before o_proj, N*qDim
	xm    []float32 // residual after attention, N*H
	rinv2 []float32 // 1/rms of xm, N
	a2    []float32 // post_attention_layernorm(xm), N*H
	gu    []float32 // gate_proj(a2) | up_proj(a2) per token, N*2I
	act   []float32 // silu(gate)*up, N*I
}

// op names the kernel that Workspace.work runs on the pool's workers.
type op int

const (
	opEmbed op = iota
	opNorm1
	opRoPE
	opAttn
	opNorm2
	opSwiGLU
	opNormF
	opLogProb
	opLogProbBack
	opSwiGLUBack
	opNormBack
	opAttnBack
	opRoPEBack
)

// Workspace holds every activation of one forward pass for up to MaxB x MaxT tokens, plus
// the backward pass's scratch, so that steady-state training steps allocate nothing. It
// keeps the activations of its most recent Forward, which the next Backward reads. A
// workspace serves models of one configuration and one call at a time; goroutines that run
// a model concurrently each need their own workspace (the weights are only read).
type Workspace struct {
	MaxB, MaxT int
	// LogProbs is filled by Forward on a causal LM: log p(Targets[i] | prefix), B*T.
	LogProbs []float32
	// Logits is filled by Forward on a causal LM: B*T*vocab.
	Logits []float32
	// Rewards is filled by Forward on a sequence classifier: one per row, B.
	Rewards []float32

	dims dims
	rope *nn.RoPE
	err  error // set when the model config could not be built

	layers []layerActs
	xf     []float32 // final residual stream, N*H
	rinvF  []float32
	af     []float32   // model.norm(xf), N*H
	lse    []float32   // logsumexp per token, N
	pos    []int32     // default positions 0..T-1 per row, MaxB*MaxT
	attn   [][]float32 // per-worker attention scratch (probabilities or their gradients)

	// Backward scratch, shared by all layers, allocated by the first Backward (ensureBackward).
	dx, da, dqkv, do []float32
	dgu, dact        []float32
	dLogits          []float32 // one chunk of rows, headRows*vocab
	headRows         int
	coef             []float32   // WeightedNLL's dL/dlogp, N
	dwPart           [][]float32 // per worker, H
	workers          int

	// State of the current call, read by work on the pool's goroutines.
	m        *Model
	b        *Batch
	bt, n    int // B and T of the batch, n = B*T
	bPos     []int32
	op       op
	layer    int
	chunk0   int // first token of the LM-head backward chunk
	dOut     []float32
	normIn   []float32 // RMSNorm backward operands for opNormBack
	normW    []float32
	normRinv []float32
	normDy   []float32
	ready    bool // a Forward has filled the activations for b
	run      func(lo, hi int)
}

// dims are the sizes a workspace was built for.
type dims struct {
	vocab, hidden, inter, layers, heads, kvHeads, headDim, maxPos int
	classifier                                                    bool
	eps, scale                                                    float32
}

// defaultHeadRows is how many tokens' logit gradients the LM-head backward holds at once.
const defaultHeadRows = 256

// qkvDim is the width of a token's fused query, key and value projections.
func (d dims) qkvDim() int { return (d.heads + 2*d.kvHeads) * d.headDim }

func dimsOf(c Config) dims {
	hd := c.HeadDimension()
	return dims{
		vocab: c.VocabSize, hidden: c.HiddenSize, inter: c.IntermediateSize, layers: c.NumHiddenLayers,
		heads: c.NumAttentionHeads, kvHeads: c.NumKeyValueHeads, headDim: hd, maxPos: c.MaxPositionEmbeddings,
		classifier: c.IsSequenceClassifier(), eps: float32(c.RMSNormEps), scale: float32(1 / math.Sqrt(float64(hd))),
	}
}

// NewWorkspace preallocates the activations and scratch for batches of up to maxB rows of
// maxT tokens (values below 1 mean 1; maxT is capped at max_position_embeddings). An
// invalid model config is reported by the first Forward.
func (m *Model) NewWorkspace(maxB, maxT int) *Workspace {
	maxB, maxT = max(maxB, 1), max(maxT, 1)
	if err := m.Config.Validate(); err != nil {
		return &Workspace{MaxB: maxB, MaxT: maxT, err: fmt.Errorf("workspace: %w", err)}
	}
	d := dimsOf(m.Config)
	maxT = min(maxT, d.maxPos)
	rope, err := nn.NewRoPE(d.headDim, d.maxPos, m.Config.RopeTheta)
	if err != nil {
		return &Workspace{MaxB: maxB, MaxT: maxT, err: fmt.Errorf("workspace: %w", err)}
	}
	n := maxB * maxT
	h, qd, qkvd := d.hidden, d.heads*d.headDim, d.qkvDim()
	f := func(k int) []float32 { return make([]float32, k) }
	ws := &Workspace{MaxB: maxB, MaxT: maxT, dims: d, rope: rope, layers: make([]layerActs, d.layers)}
	for l := range ws.layers {
		ws.layers[l] = layerActs{
			x: f(n * h), rinv1: f(n), a1: f(n * h), qkv: f(n * qkvd),
			lse: f(maxB * d.heads * maxT), o: f(n * qd), xm: f(n * h), rinv2: f(n), a2: f(n * h),
			gu: f(n * 2 * d.inter), act: f(n * d.inter),
		}
	}
	ws.xf, ws.rinvF, ws.af = f(n*h), f(n), f(n*h)
	ws.pos = make([]int32, n)
	if d.classifier {
		ws.Rewards = f(maxB)
	} else {
		ws.Logits = f(n * d.vocab)
		ws.LogProbs, ws.lse, ws.coef = f(n), f(n), f(n)
	}
	ws.workers = 1
	if m.Pool != nil {
		ws.workers = m.Pool.Workers()
	}
	// Attention probabilities live only in per-worker scratch (the backward pass
	// recomputes them from the saved log-sum-exp), so memory grows as T, not T^2, per head.
	ws.attn = make([][]float32, ws.workers)
	for w := range ws.attn {
		ws.attn[w] = f(max(maxT*maxT, nn.AttentionBackwardScratch(maxT, maxT)))
	}
	ws.run = ws.work
	ws.headRows = defaultHeadRows
	return ws
}

// ensureBackward allocates the backward pass's scratch on first use, so workspaces that
// only score (Forward alone) do not pay for it.
func (ws *Workspace) ensureBackward() {
	if ws.dx != nil {
		return
	}
	d := ws.dims
	n, h := ws.MaxB*ws.MaxT, d.hidden
	f := func(k int) []float32 { return make([]float32, k) }
	ws.dx, ws.da, ws.dqkv, ws.do = f(n*h), f(n*h), f(n*d.qkvDim()), f(n*d.heads*d.headDim)
	ws.dgu, ws.dact = f(n*2*d.inter), f(n*d.inter)
	if !d.classifier {
		ws.dLogits = f(min(n, ws.headRows) * d.vocab)
	}
	ws.dwPart = make([][]float32, ws.workers)
	for w := range ws.dwPart {
		ws.dwPart[w] = f(h)
	}
}

// chunk returns part w of [0,n) split into parts near-equal contiguous ranges.
func chunk(n, parts, w int) (lo, hi int) {
	q, r := n/parts, n%parts
	lo = w*q + min(w, r)
	hi = lo + q
	if w < r {
		hi++
	}
	return lo, hi
}

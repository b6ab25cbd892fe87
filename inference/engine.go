// Package inference samples from a causal Llama model with a KV cache. A prompt is
// prefilled once into a Prefix whose keys and values every sample of that prompt reads
// without copying; each Sequence keeps only the keys and values of its own generated
// suffix. All live sequences decode together, so each step's matmuls have one row per
// sequence. Sampling supports greedy, temperature, top-k and top-p with a seeded RNG per
// sample, and stops at stop tokens or a length limit.
//
// An Engine is not safe for concurrent use; give each goroutine its own (they may share
// the model, whose weights the engine only reads).
package inference

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/kernels/nn"
	"github.com/posttrain/posttrain/transformer"
)

// dims are the model sizes the engine works with.
type dims struct {
	vocab, hidden, inter, layers, heads, kvHeads, headDim int
	qDim, kvDim, qkvDim, maxPos                           int
	eps, scale                                            float32
	// Row strides of the transposed weights: each output width plus padLd, because
	// power-of-two strides alias in the cache when the sgemm packs rows.
	qkvLd, hLd, guLd, vocabLd int
}

// padLd pads the row stride of the transposed weights by one cache line.
const padLd = 16

func dimsOf(c transformer.Config) dims {
	hd := c.HeadDimension()
	d := dims{
		vocab: c.VocabSize, hidden: c.HiddenSize, inter: c.IntermediateSize, layers: c.NumHiddenLayers,
		heads: c.NumAttentionHeads, kvHeads: c.NumKeyValueHeads, headDim: hd, maxPos: c.MaxPositionEmbeddings,
		eps: float32(c.RMSNormEps), scale: float32(1 / math.Sqrt(float64(hd))),
	}
	d.qDim, d.kvDim = d.heads*hd, d.kvHeads*hd
	d.qkvDim = d.qDim + 2*d.kvDim
	d.qkvLd, d.hLd, d.guLd, d.vocabLd = d.qkvDim+padLd, d.hidden+padLd, 2*d.inter+padLd, d.vocab+padLd
	return d
}

// KVBytesPerToken is the key/value cache size of one token position for cfg: two float32
// vectors of num_key_value_heads*head_dim per layer.
func KVBytesPerToken(cfg transformer.Config) int64 {
	return int64(cfg.NumHiddenLayers) * 2 * int64(cfg.NumKeyValueHeads*cfg.HeadDimension()) * 4
}

// RequestKVBytes is the most KV cache memory one request can hold: its prompt once (shared
// by all samples) plus samples x maxNewTokens suffix positions. Admission control sums it
// over the requests in flight.
func RequestKVBytes(cfg transformer.Config, promptLen, samples, maxNewTokens int) int64 {
	return KVBytesPerToken(cfg) * (int64(promptLen) + int64(samples)*int64(maxNewTokens))
}

// layerWeights are one block's weights. The matrices are stored transposed, [in, out],
// which is the layout the sgemm packs fastest as a right-hand operand (row copies); the
// q/k/v and gate/up projections are fused so each costs one matmul.
type layerWeights struct {
	inputNorm, postNorm []float32 // live views of the model's gains
	qkvT                []float32 // [hidden, qDim+2*kvDim], row stride qkvLd
	oT                  []float32 // [qDim, hidden], row stride hLd
	gateUpT             []float32 // [hidden, 2*inter], row stride guLd
	downT               []float32 // [inter, hidden], row stride hLd
}

// Options size an Engine.
type Options struct {
	// MaxBatch is the most sequences decoded in one step (default 64).
	MaxBatch int
}

// Stats are the engine's cumulative counters since creation (or the last ResetStats).
type Stats struct {
	// PrefillTokens are prompt tokens run through the model.
	PrefillTokens int64 `json:"prefill_tokens"`
	// PrefillTokensSaved are prompt tokens not recomputed because samples shared a prefix.
	PrefillTokensSaved int64 `json:"prefill_tokens_saved"`
	// DecodeTokens are tokens run through the model one step at a time.
	DecodeTokens int64 `json:"decode_tokens"`
	// SampledTokens are tokens drawn (one per sequence per step, plus the first from the
	// prompt's logits).
	SampledTokens int64 `json:"sampled_tokens"`
	// Prompts counts prefills, Sequences counts samples started.
	Prompts   int64 `json:"prompts"`
	Sequences int64 `json:"sequences"`
	// Time per phase.
	PrefillTime time.Duration `json:"prefill_ns"`
	DecodeTime  time.Duration `json:"decode_ns"`
	SampleTime  time.Duration `json:"sample_ns"`
}

// Engine runs prefill and batched decode steps for one causal LM.
type Engine struct {
	m    *transformer.Model
	pool *kernels.Pool
	d    dims
	rope *nn.RoPE
	w    []layerWeights
	// lmHeadT is the LM head transposed, [hidden, vocab], row stride vocabLd.
	lmHeadT []float32

	maxBatch int
	rows     int // activation rows allocated: MaxBatch, grown to the longest prompt prefilled
	workers  int

	// Per-row activations, rows x width.
	x, a, qkv, o, gu, act []float32
	logits                []float32 // maxBatch x vocab
	pos                   []int32   // per-row positions
	// Per-worker attention scratch: decode scores (maxBatch x maxPos) or prefill
	// probabilities (maxPos x maxPos).
	scratch [][]float32
	// Per-row token samplers (each owns vocabulary-sized scratch).
	samplers []*TokenSampler

	// State of the current parallel op, read by work on the pool's goroutines.
	op     op
	slot   atomic.Int32 // next free scratch slot of the current op
	layer  int
	n      int // rows in this step (or prompt length in prefill)
	seqs   []*Sequence
	groups []group
	run    func(lo, hi int)
	sample sampleState
	step   uint64 // Decode call counter, to catch a sequence given twice

	// Free lists so steady-state serving does not allocate cache memory.
	freeSuffix [][]float32
	freePrefix []*Prefix

	stats Stats
}

// group is a run of step rows [lo,hi) that share one prefix.
type group struct {
	lo, hi int
	prefix *Prefix
}

// NewEngine prepares an engine for the causal LM m. The engine keeps its own transposed
// copy of the weight matrices (see Sync), so after m's weights change call Sync before
// sampling again. Decode scratch is allocated up front; Prefill grows its own scratch to
// the longest prompt seen.
func NewEngine(m *transformer.Model, opts Options) (*Engine, error) {
	if m == nil || m.W == nil {
		return nil, errors.New("inference: nil model")
	}
	if err := m.Config.Validate(); err != nil {
		return nil, fmt.Errorf("inference: %w", err)
	}
	if m.Config.IsSequenceClassifier() || m.W.LMHead == nil {
		return nil, errors.New("inference: the model is a sequence classifier (no lm_head); sampling needs a causal LM")
	}
	if m.Pool == nil {
		return nil, errors.New("inference: the model has no kernel pool")
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 64
	}
	d := dimsOf(m.Config)
	rope, err := nn.NewRoPE(d.headDim, d.maxPos, m.Config.RopeTheta)
	if err != nil {
		return nil, fmt.Errorf("inference: %w", err)
	}
	e := &Engine{m: m, pool: m.Pool, d: d, rope: rope, maxBatch: opts.MaxBatch, workers: m.Pool.Workers()}
	e.w = make([]layerWeights, d.layers)
	for l := range e.w {
		e.w[l] = layerWeights{
			qkvT: make([]float32, d.hidden*d.qkvLd), oT: make([]float32, d.qDim*d.hLd),
			gateUpT: make([]float32, d.hidden*d.guLd), downT: make([]float32, d.inter*d.hLd),
		}
	}
	e.lmHeadT = make([]float32, d.hidden*d.vocabLd)
	e.Sync()
	f := func(n int) []float32 { return make([]float32, n) }
	e.ensureRows(e.maxBatch)
	e.logits = f(e.maxBatch * d.vocab)
	// Attention scratch per worker: a decode item's packed queries, scores and outputs
	// (grown by Prefill to hold a prompt's n x n attention probabilities).
	rep := d.heads / d.kvHeads
	e.scratch = make([][]float32, e.workers)
	for i := range e.scratch {
		e.scratch[i] = f(e.maxBatch * rep * (2*d.headDim + d.maxPos))
	}
	e.samplers = make([]*TokenSampler, e.maxBatch)
	for i := range e.samplers {
		e.samplers[i] = NewTokenSampler(d.vocab)
	}
	e.seqs = make([]*Sequence, 0, e.maxBatch)
	e.groups = make([]group, 0, e.maxBatch)
	e.run = e.work
	return e, nil
}

// ensureRows grows the per-row activations to hold n rows. Decode never needs more than
// MaxBatch (allocated up front); a longer prompt grows them once, outside the decode path.
func (e *Engine) ensureRows(n int) {
	if n <= e.rows {
		return
	}
	d := &e.d
	f := func(k int) []float32 { return make([]float32, k) }
	e.x, e.a, e.qkv, e.o = f(n*d.hidden), f(n*d.hidden), f(n*d.qkvDim), f(n*d.qDim)
	e.gu, e.act = f(n*2*d.inter), f(n*d.inter)
	e.pos = make([]int32, n)
	e.rows = n
}

// ensurePrefillScratch grows each worker's attention scratch to n x n probabilities.
func (e *Engine) ensurePrefillScratch(n int) {
	for i, s := range e.scratch {
		if len(s) < n*n {
			e.scratch[i] = make([]float32, n*n)
		}
	}
}

// Sync copies the model's current weights into the engine's transposed layout. NewEngine
// calls it; call it again after the model's weights change (e.g. after training steps),
// since the engine samples from its own copy of the matrices.
func (e *Engine) Sync() {
	d := &e.d
	W := e.m.W
	for l := range e.w {
		lw, src := &e.w[l], &W.Layers[l]
		lw.inputNorm, lw.postNorm = src.InputNorm, src.PostAttnNorm
		// Fused outputs are columns side by side: q | k | v and gate | up.
		transposeInto(lw.qkvT, d.qkvLd, 0, src.Q, d.qDim, d.hidden)
		transposeInto(lw.qkvT, d.qkvLd, d.qDim, src.K, d.kvDim, d.hidden)
		transposeInto(lw.qkvT, d.qkvLd, d.qDim+d.kvDim, src.V, d.kvDim, d.hidden)
		transposeInto(lw.oT, d.hLd, 0, src.O, d.hidden, d.qDim)
		transposeInto(lw.gateUpT, d.guLd, 0, src.Gate, d.inter, d.hidden)
		transposeInto(lw.gateUpT, d.guLd, d.inter, src.Up, d.inter, d.hidden)
		transposeInto(lw.downT, d.hLd, 0, src.Down, d.hidden, d.inter)
	}
	transposeInto(e.lmHeadT, d.vocabLd, 0, W.LMHead, d.vocab, d.hidden)
}

// transposeInto writes src ([rows, cols]) transposed into dst ([cols, ld]) starting at
// column col0, in cache-sized tiles.
func transposeInto(dst []float32, ld, col0 int, src []float32, rows, cols int) {
	const tile = 32
	for i0 := 0; i0 < rows; i0 += tile {
		for j0 := 0; j0 < cols; j0 += tile {
			for i := i0; i < min(i0+tile, rows); i++ {
				row := src[i*cols : (i+1)*cols]
				for j := j0; j < min(j0+tile, cols); j++ {
					dst[j*ld+col0+i] = row[j]
				}
			}
		}
	}
}

// Config is the model configuration the engine serves.
func (e *Engine) Config() transformer.Config { return e.m.Config }

// MaxBatch is the most sequences one Decode step takes.
func (e *Engine) MaxBatch() int { return e.maxBatch }

// KVBytesPerToken is KVBytesPerToken for the engine's model.
func (e *Engine) KVBytesPerToken() int64 { return KVBytesPerToken(e.m.Config) }

// RequestKVBytes is RequestKVBytes for the engine's model.
func (e *Engine) RequestKVBytes(promptLen, samples, maxNewTokens int) int64 {
	return RequestKVBytes(e.m.Config, promptLen, samples, maxNewTokens)
}

// Stats returns the cumulative counters.
func (e *Engine) Stats() Stats { return e.stats }

// ResetStats zeroes the counters.
func (e *Engine) ResetStats() { e.stats = Stats{} }

package transformer

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// Tensor is a named view into a Params buffer, row-major, with Hugging Face's name and
// [out, in] shape convention for linear weights.
type Tensor struct {
	Name  string
	Shape []int
	Data  []float32
}

// Size is the number of elements.
func (t Tensor) Size() int { return len(t.Data) }

// Layer holds the views of one decoder block. Linear weights are [out, in].
type Layer struct {
	InputNorm    []float32 // [hidden]
	Q            []float32 // [heads*headDim, hidden]
	K            []float32 // [kvHeads*headDim, hidden]
	V            []float32 // [kvHeads*headDim, hidden]
	O            []float32 // [hidden, heads*headDim]
	PostAttnNorm []float32 // [hidden]
	Gate         []float32 // [intermediate, hidden]
	Up           []float32 // [intermediate, hidden]
	Down         []float32 // [hidden, intermediate]

	// qkv spans Q, K and V ([heads*headDim + 2*kvHeads*headDim, hidden]) and gateUp spans
	// Gate and Up ([2*intermediate, hidden]): they are adjacent in the flat buffer, so each
	// group runs as one larger matmul.
	qkv, gateUp []float32
}

// Params is every weight of a model in one flat buffer (so an optimizer, an average or a
// gradient is one slice), with named views in checkpoint order. The same layout serves for
// gradients and optimizer moments.
type Params struct {
	Data    []float32
	Tensors []Tensor
	Embed   []float32 // [vocab, hidden]
	Layers  []Layer
	Norm    []float32 // [hidden]
	// LMHead is [vocab, hidden]; it aliases Embed when embeddings are tied and is nil on a
	// sequence classifier.
	LMHead []float32
	// Score is the reward head [1, hidden]; nil on a causal LM.
	Score []float32
}

// NewParams allocates a zeroed parameter buffer laid out for cfg.
func NewParams(cfg Config) *Params {
	h, kvDim, qDim := cfg.HiddenSize, cfg.NumKeyValueHeads*cfg.HeadDimension(), cfg.NumAttentionHeads*cfg.HeadDimension()
	type spec struct {
		name  string
		shape []int
	}
	specs := []spec{{"model.embed_tokens.weight", []int{cfg.VocabSize, h}}}
	for l := 0; l < cfg.NumHiddenLayers; l++ {
		p := fmt.Sprintf("model.layers.%d.", l)
		specs = append(specs,
			spec{p + "input_layernorm.weight", []int{h}},
			spec{p + "self_attn.q_proj.weight", []int{qDim, h}},
			spec{p + "self_attn.k_proj.weight", []int{kvDim, h}},
			spec{p + "self_attn.v_proj.weight", []int{kvDim, h}},
			spec{p + "self_attn.o_proj.weight", []int{h, qDim}},
			spec{p + "post_attention_layernorm.weight", []int{h}},
			spec{p + "mlp.gate_proj.weight", []int{cfg.IntermediateSize, h}},
			spec{p + "mlp.up_proj.weight", []int{cfg.IntermediateSize, h}},
			spec{p + "mlp.down_proj.weight", []int{h, cfg.IntermediateSize}},
		)
	}
	specs = append(specs, spec{"model.norm.weight", []int{h}})
	switch {
	case cfg.IsSequenceClassifier():
		specs = append(specs, spec{"score.weight", []int{1, h}})
	case !cfg.TieWordEmbeddings:
		specs = append(specs, spec{"lm_head.weight", []int{cfg.VocabSize, h}})
	}
	total := 0
	for _, s := range specs {
		total += product(s.shape)
	}
	p := &Params{Data: make([]float32, total), Layers: make([]Layer, cfg.NumHiddenLayers)}
	off := 0
	for _, s := range specs {
		n := product(s.shape)
		p.Tensors = append(p.Tensors, Tensor{Name: s.name, Shape: s.shape, Data: p.Data[off : off+n : off+n]})
		off += n
	}
	p.bindViews(cfg)
	return p
}

func product(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// bindViews points the typed fields at the named tensors.
func (p *Params) bindViews(cfg Config) {
	i, off := 0, 0
	next := func() []float32 { t := p.Tensors[i].Data; i++; off += len(t); return t }
	p.Embed = next()
	for l := range p.Layers {
		ly := Layer{InputNorm: next()}
		qkvOff := off
		ly.Q, ly.K, ly.V = next(), next(), next()
		ly.qkv = p.Data[qkvOff:off:off]
		ly.O, ly.PostAttnNorm = next(), next()
		guOff := off
		ly.Gate, ly.Up = next(), next()
		ly.gateUp = p.Data[guOff:off:off]
		ly.Down = next()
		p.Layers[l] = ly
	}
	p.Norm = next()
	switch {
	case cfg.IsSequenceClassifier():
		p.Score = next()
	case cfg.TieWordEmbeddings:
		p.LMHead = p.Embed
	default:
		p.LMHead = next()
	}
}

// Lookup returns the tensor with the given Hugging Face name.
func (p *Params) Lookup(name string) (Tensor, bool) {
	for _, t := range p.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// Zero sets every element to 0 (used to clear gradients).
func (p *Params) Zero() { clear(p.Data) }

// InitRandom fills the weights the way Hugging Face initialises a LlamaModel: normal with
// std initializer_range for linear and embedding weights, ones for the RMSNorm gains. The
// same seed always gives the same weights.
func (p *Params) InitRandom(cfg Config, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	std := cfg.InitializerRange
	if std <= 0 {
		std = 0.02
	}
	for _, t := range p.Tensors {
		if len(t.Shape) == 1 {
			for i := range t.Data {
				t.Data[i] = 1
			}
			continue
		}
		for i := range t.Data {
			t.Data[i] = float32(rng.NormFloat64() * std)
		}
	}
}

// HasNonFinite returns the name of the first tensor holding a NaN or Inf, or "".
func (p *Params) HasNonFinite() string {
	for _, t := range p.Tensors {
		for _, v := range t.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return t.Name
			}
		}
	}
	return ""
}

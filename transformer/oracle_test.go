package transformer

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// oracle is an independent float64 implementation of the whole model, built from
// gorgonia primitives (matmul, elementwise ops, sums; no gorgonia softmax), whose symbolic
// gradients check the hand-written backward pass.
type oracle struct {
	g      *G.ExprGraph
	cfg    Config
	params []*G.Node // one per tensor of Params, in order
	// Per-row outputs (log-prob vectors or reward scalars) and the scalar objective.
	outs []*G.Node
	cost *G.Node
}

// constant makes a float64 matrix or vector node holding v. Nodes get unique names because
// gorgonia merges nodes that hash alike, and the hash ignores the value.
func constant(g *G.ExprGraph, name string, v []float64, shape ...int) *G.Node {
	if name == "" {
		name = "c" + itoa(len(g.AllNodes()))
	}
	t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
	if len(shape) == 1 {
		return G.NewVector(g, tensor.Float64, G.WithShape(shape...), G.WithName(name), G.WithValue(t))
	}
	return G.NewMatrix(g, tensor.Float64, G.WithShape(shape...), G.WithName(name), G.WithValue(t))
}

func f64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func ones(n int) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = 1
	}
	return v
}

// buildOracle builds the model's graph for batch b with objective sum_i c_i * out_i.
func buildOracle(t *testing.T, m *Model, b *Batch, c []float32) *oracle {
	t.Helper()
	cfg := m.Config
	g := G.NewGraph()
	o := &oracle{g: g, cfg: cfg}
	byName := map[string]*G.Node{}
	for _, ts := range m.W.Tensors {
		shape := ts.Shape
		if len(shape) == 2 && shape[0] == 1 {
			shape = shape[1:] // score.weight [1,h] as a vector: gorgonia treats 1xN matrices as vectors
		}
		n := constant(g, ts.Name, f64(ts.Data), shape...)
		o.params = append(o.params, n)
		byName[ts.Name] = n
	}
	must := func(n *G.Node, err error) *G.Node { require.NoError(t, err); return n }
	T, H, V := b.T, cfg.HiddenSize, cfg.VocabSize
	hd, nh, nkv := cfg.HeadDimension(), cfg.NumAttentionHeads, cfg.NumKeyValueHeads
	qd, kvd := nh*hd, nkv*hd
	// Broadcasts are written as matmuls with constant matrices (gorgonia's OuterProd
	// gradient fails on vectors of different lengths): meanH averages each row across its
	// columns, onesTT sums each row of a T x T matrix, and spread turns a vector w into
	// diag(w) so that x * w (per column) is x · diag(w).
	meanH := make([]float64, H*H)
	for i := range meanH {
		meanH[i] = 1 / float64(H)
	}
	meanHN := constant(g, "meanH", meanH, H, H)
	onesTT := constant(g, "onesTT", ones(T*T), T, T)
	spread := make([]float64, H*H*H)
	for i := 0; i < H; i++ {
		spread[(i*H+i)*H+i] = 1
	}
	spreadN := constant(g, "spread", spread, H*H, H)
	eps := G.NewConstant(cfg.RMSNormEps)
	scale := G.NewConstant(1 / math.Sqrt(float64(hd)))
	rms := func(x, w *G.Node) *G.Node {
		ms := must(G.Mul(must(G.Square(x)), meanHN))
		r := must(G.Inverse(must(G.Sqrt(must(G.Add(ms, eps))))))
		diag := must(G.Reshape(must(G.Mul(spreadN, w)), tensor.Shape{H, H}))
		return must(G.Mul(must(G.HadamardProd(x, r)), diag))
	}
	linear := func(x, w *G.Node) *G.Node { return must(G.Mul(x, must(G.Transpose(w)))) }
	// selector returns the width x hd matrix that picks head h's columns.
	selector := func(width, h int) *G.Node {
		e := make([]float64, width*hd)
		for i := 0; i < hd; i++ {
			e[(h*hd+i)*hd+i] = 1
		}
		return constant(g, "", e, width, hd)
	}
	// rotateHalf is the width x width matrix R with (x R) = rotate_half(x) per head.
	rotateHalf := func(width int) *G.Node {
		r := make([]float64, width*width)
		half := hd / 2
		for h := 0; h < width/hd; h++ {
			for i := 0; i < half; i++ {
				r[(h*hd+i+half)*width+h*hd+i] = -1
				r[(h*hd+i)*width+h*hd+i+half] = 1
			}
		}
		return constant(g, "", r, width, width)
	}
	rq, rk := rotateHalf(qd), rotateHalf(kvd)
	var costs []*G.Node
	for r := 0; r < b.B; r++ {
		pos := make([]int, T)
		for i := range pos {
			pos[i] = i
			if b.Positions != nil {
				pos[i] = int(b.Positions[r*T+i])
			}
		}
		trig := func(width int) (*G.Node, *G.Node) {
			cs, sn := make([]float64, T*width), make([]float64, T*width)
			for i, p := range pos {
				for col := 0; col < width; col++ {
					j := col % hd % (hd / 2)
					ang := float64(p) * math.Pow(cfg.RopeTheta, -float64(2*j)/float64(hd))
					cs[i*width+col], sn[i*width+col] = math.Cos(ang), math.Sin(ang)
				}
			}
			return constant(g, "", cs, T, width), constant(g, "", sn, T, width)
		}
		cq, sq := trig(qd)
		ck, sk := trig(kvd)
		mask := make([]float64, T*T)
		for i := 0; i < T; i++ {
			for j := 0; j <= i; j++ {
				if b.Segments == nil || b.Segments[r*T+i] == b.Segments[r*T+j] {
					mask[i*T+j] = 1
				}
			}
		}
		maskN := constant(g, "", mask, T, T)
		oneHot := make([]float64, T*V)
		for i := 0; i < T; i++ {
			oneHot[i*V+int(b.Tokens[r*T+i])] = 1
		}
		x := must(G.Mul(constant(g, "", oneHot, T, V), byName["model.embed_tokens.weight"]))
		for l := 0; l < cfg.NumHiddenLayers; l++ {
			p := func(s string) *G.Node { return byName["model.layers."+itoa(l)+"."+s+".weight"] }
			a1 := rms(x, p("input_layernorm"))
			q := linear(a1, p("self_attn.q_proj"))
			k := linear(a1, p("self_attn.k_proj"))
			v := linear(a1, p("self_attn.v_proj"))
			q = must(G.Add(must(G.HadamardProd(q, cq)), must(G.HadamardProd(must(G.Mul(q, rq)), sq))))
			k = must(G.Add(must(G.HadamardProd(k, ck)), must(G.HadamardProd(must(G.Mul(k, rk)), sk))))
			var att *G.Node
			for h := 0; h < nh; h++ {
				eq, ek := selector(qd, h), selector(kvd, h/(nh/nkv))
				qh, kh, vh := must(G.Mul(q, eq)), must(G.Mul(k, ek)), must(G.Mul(v, ek))
				s := must(G.HadamardProd(must(G.Mul(qh, must(G.Transpose(kh)))), scale))
				// Masked softmax: scores are O(1) here, so exp needs no max shift in float64.
				e := must(G.HadamardProd(must(G.Exp(s)), maskN))
				pr := must(G.HadamardDiv(e, must(G.Mul(e, onesTT))))
				oh := must(G.Mul(must(G.Mul(pr, vh)), must(G.Transpose(eq))))
				if att == nil {
					att = oh
				} else {
					att = must(G.Add(att, oh))
				}
			}
			xm := must(G.Add(x, linear(att, p("self_attn.o_proj"))))
			a2 := rms(xm, p("post_attention_layernorm"))
			gt := linear(a2, p("mlp.gate_proj"))
			up := linear(a2, p("mlp.up_proj"))
			act := must(G.HadamardProd(must(G.HadamardProd(gt, must(G.Sigmoid(gt)))), up))
			x = must(G.Add(xm, linear(act, p("mlp.down_proj"))))
		}
		af := rms(x, byName["model.norm.weight"])
		if cfg.IsSequenceClassifier() {
			sel := make([]float64, T)
			sel[b.Last[r]] = 1
			hLast := must(G.Mul(must(G.Transpose(af)), constant(g, "", sel, T)))
			reward := must(G.Mul(hLast, byName["score.weight"]))
			o.outs = append(o.outs, reward)
			costs = append(costs, must(G.HadamardProd(reward, G.NewConstant(float64(c[r])))))
			continue
		}
		head := byName["lm_head.weight"]
		if cfg.TieWordEmbeddings {
			head = byName["model.embed_tokens.weight"]
		}
		logits := linear(af, head)
		lse := must(G.Log(must(G.Sum(must(G.Exp(logits)), 1))))
		tgt := make([]float64, T*V)
		valid := make([]float64, T)
		coef := make([]float64, T)
		for i := 0; i < T; i++ {
			if tg := b.Targets[r*T+i]; tg >= 0 {
				tgt[i*V+int(tg)] = 1
				valid[i] = 1
			}
			coef[i] = float64(c[r*T+i])
		}
		picked := must(G.Sum(must(G.HadamardProd(logits, constant(g, "", tgt, T, V))), 1))
		logp := must(G.HadamardProd(must(G.Sub(picked, lse)), constant(g, "", valid, T)))
		o.outs = append(o.outs, logp)
		costs = append(costs, must(G.Sum(must(G.HadamardProd(logp, constant(g, "", coef, T))))))
	}
	o.cost = costs[0]
	for _, cn := range costs[1:] {
		o.cost = must(G.Add(o.cost, cn))
	}
	_, err := G.Grad(o.cost, o.params...)
	require.NoError(t, err)
	return o
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}

// TestModelMatchesGorgoniaOracle compares Forward outputs and Backward gradients with the
// float64 gorgonia oracle: LM and score heads, tied and untied, with packing segments and
// custom positions.
func TestModelMatchesGorgoniaOracle(t *testing.T) {
	cases := []struct {
		name             string
		classifier, tied bool
		packed           bool
	}{
		{"lm untied", false, false, false},
		{"lm tied packed", false, true, true},
		{"classifier packed", true, false, true},
		{"classifier", true, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.classifier, tc.tied)
			m := newTestModel(t, cfg, 2, 17)
			const B, T = 2, 6
			b := randomBatch(cfg, B, T, 23)
			if tc.packed {
				packSegments(b, 2)
				b.Positions[1] = 7 // custom, non-contiguous positions
			}
			n := B * T
			if tc.classifier {
				n = B
			}
			rng := rand.New(rand.NewPCG(4, 4))
			c := make([]float32, n)
			for i := range c {
				c[i] = float32(rng.NormFloat64())
			}
			ws := m.NewWorkspace(B, T)
			require.NoError(t, m.Forward(ws, b))
			grads := m.NewGrads()
			require.NoError(t, m.Backward(ws, b, c, grads))

			o := buildOracle(t, m, b, c)
			vm := G.NewTapeMachine(o.g, G.BindDualValues(o.params...))
			defer vm.Close()
			require.NoError(t, vm.RunAll())
			for r, out := range o.outs {
				switch val := out.Value().Data().(type) {
				case float64:
					require.InDelta(t, val, ws.Rewards[r], 1e-4, "reward %d", r)
				case []float64:
					for i, want := range val {
						require.InDelta(t, want, ws.LogProbs[r*T+i], 1e-4, "logprob row %d token %d", r, i)
					}
				default:
					t.Fatalf("unexpected oracle output %T", val)
				}
			}
			for i, pn := range o.params {
				gv, err := pn.Grad()
				require.NoError(t, err)
				want := gv.Data().([]float64)
				got := grads.Tensors[i].Data
				require.Len(t, want, len(got), grads.Tensors[i].Name)
				var scale float64
				for _, w := range want {
					scale = max(scale, math.Abs(w))
				}
				for j := range want {
					require.InDelta(t, want[j], got[j], 1e-4*scale+1e-6, "%s[%d]", grads.Tensors[i].Name, j)
				}
			}
		})
	}
}

package averaging

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tinyConfig(t testing.TB) transformer.Config {
	t.Helper()
	cfg, err := transformer.Preset("tiny")
	require.NoError(t, err)
	return cfg
}

func tokenizerJSON(t testing.TB) []byte {
	t.Helper()
	raw, err := os.ReadFile("../tokenizer/testdata/tiny_llama3.json")
	require.NoError(t, err)
	return raw
}

// saveModel writes a model of cfg with weights from seed into dir (with tok as its
// tokenizer.json when non-nil) and returns its tensors by name.
func saveModel(t testing.TB, dir string, cfg transformer.Config, seed uint64, tok []byte, edit func(*transformer.Model)) map[string][]float32 {
	t.Helper()
	pool := kernels.NewPool(1)
	defer pool.Close()
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(seed)
	// Vary the RMSNorm gains too (Init sets them all to 1), so every tensor is averaged.
	for i := range m.W.Norm {
		m.W.Norm[i] = 1 + float32(seed%7)*0.01*float32(i%5)
	}
	if edit != nil {
		edit(m)
	}
	require.NoError(t, checkpoint.Save(context.Background(), dir, m, checkpoint.SaveOptions{TokenizerJSON: tok}))
	out := map[string][]float32{}
	for _, tt := range m.W.Tensors {
		out[tt.Name] = append([]float32(nil), tt.Data...)
	}
	return out
}

// readModel returns a saved model's tensors by name and their order.
func readModel(t testing.TB, dir string) (map[string][]float32, []string) {
	t.Helper()
	r, err := safetensors.Open(filepath.Join(dir, checkpoint.WeightsFile))
	require.NoError(t, err)
	defer r.Close()
	out := map[string][]float32{}
	var names []string
	for _, info := range r.Tensors() {
		d, err := r.Float32(info.Name)
		require.NoError(t, err)
		out[info.Name] = d
		names = append(names, info.Name)
	}
	return out, names
}

func TestUniformIsTheExactElementwiseMean(t *testing.T) {
	root := t.TempDir()
	cfg := tinyConfig(t)
	tok := tokenizerJSON(t)
	var dirs []string
	var models []map[string][]float32
	for i := 0; i < 3; i++ {
		d := filepath.Join(root, "run", string(rune('a'+i)))
		models = append(models, saveModel(t, d, cfg, uint64(10+i), tok, nil))
		dirs = append(dirs, d)
	}
	out := filepath.Join(root, "soup")
	var done []int
	res, err := Uniform(context.Background(), out, dirs, Options{Progress: func(d, total int) { done = append(done, d) }})
	require.NoError(t, err)
	got, names := readModel(t, out)
	_, wantOrder := readModel(t, dirs[0])
	assert.Equal(t, wantOrder, names, "tensors keep the first input's order")
	assert.Len(t, done, len(names))
	assert.Equal(t, len(names), res.Tensors)
	assert.Equal(t, []float64{1.0 / 3, 1.0 / 3, 1.0 / 3}, res.Weights)
	checked := 0
	for name, g := range got {
		for j := range g {
			want := float32((float64(models[0][name][j]) + float64(models[1][name][j]) + float64(models[2][name][j])) / 3)
			if math.Float32bits(want) != math.Float32bits(g[j]) {
				t.Fatalf("%s[%d] = %v, want %v", name, j, g[j], want)
			}
			checked++
		}
	}
	assert.Equal(t, res.Parameters, int64(checked))
	// config.json and tokenizer.json are the first input's, byte for byte.
	for _, f := range []string{checkpoint.ConfigFile, checkpoint.TokenizerFile} {
		a, err := os.ReadFile(filepath.Join(dirs[0], f))
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(out, f))
		require.NoError(t, err)
		assert.Equal(t, a, b, f)
	}
	// The soup is a loadable checkpoint, and nothing temporary is left behind.
	pool := kernels.NewPool(1)
	defer pool.Close()
	_, err = checkpoint.Load(context.Background(), out, pool)
	require.NoError(t, err)
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	assert.Len(t, entries, 2, "only run/ and soup/ remain")
}

func TestWeightedMatchesHandComputation(t *testing.T) {
	root := t.TempDir()
	cfg := tinyConfig(t)
	var dirs []string
	var models []map[string][]float32
	for i := 0; i < 3; i++ {
		d := filepath.Join(root, string(rune('a'+i)))
		models = append(models, saveModel(t, d, cfg, uint64(20+i), nil, nil))
		dirs = append(dirs, d)
	}
	cases := []struct {
		name    string
		weights []float64
		norm    []float64
	}{
		{"0.5 0.3 0.2", []float64{0.5, 0.3, 0.2}, []float64{0.5 / 1.0, 0.3 / 1.0, 0.2 / 1.0}},
		{"unnormalised 2 1 1", []float64{2, 1, 1}, []float64{0.5, 0.25, 0.25}},
		{"zero weight drops a model", []float64{0, 3, 1}, []float64{0, 0.75, 0.25}},
		{"one model only", []float64{0, 0, 7}, []float64{0, 0, 1}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(root, "soup", string(rune('0'+i)))
			res, err := Weighted(context.Background(), out, dirs, tc.weights, Options{})
			require.NoError(t, err)
			var sum float64
			for _, w := range tc.weights {
				sum += w
			}
			for k := range tc.norm {
				assert.InDelta(t, tc.norm[k], res.Weights[k], 1e-15)
				assert.Equal(t, tc.weights[k]/sum, res.Weights[k])
			}
			got, _ := readModel(t, out)
			for name, g := range got {
				for j := range g {
					var acc float64
					for k := range models {
						acc += res.Weights[k] * float64(models[k][name][j])
					}
					if want := float32(acc); math.Float32bits(want) != math.Float32bits(g[j]) {
						t.Fatalf("%s[%d] = %v, want %v", name, j, g[j], want)
					}
				}
			}
			if tc.name == "one model only" {
				assert.Equal(t, models[2]["model.embed_tokens.weight"], got["model.embed_tokens.weight"])
			}
		})
	}
	bad := []struct {
		weights []float64
		want    string
	}{
		{[]float64{1, -1, 1}, "weight 2 is -1; weights must be >= 0"},
		{[]float64{0, 0, 0}, "the weights sum to 0"},
		{[]float64{1, 1}, "2 weights for 3 models"},
		{[]float64{1, math.NaN(), 1}, "weight 2 is NaN"},
		{[]float64{1, math.Inf(1), 1}, "weights must be finite"},
	}
	for _, b := range bad {
		out := filepath.Join(root, "bad")
		_, err := Weighted(context.Background(), out, dirs, b.weights, Options{})
		require.ErrorContains(t, err, b.want)
		_, statErr := os.Stat(out)
		assert.True(t, os.IsNotExist(statErr))
	}
}

// normScore is a synthetic held-out score: minus the distance of model.norm.weight[0]
// from 0.5 (higher is better). It reads the soup from disk like a real metric would.
func normScore(calls *int) ScoreFunc {
	return func(_ context.Context, dir string) (float64, error) {
		*calls++
		r, err := safetensors.Open(filepath.Join(dir, checkpoint.WeightsFile))
		if err != nil {
			return 0, err
		}
		defer r.Close()
		v, err := r.Float32("model.norm.weight")
		if err != nil {
			return 0, err
		}
		return -math.Abs(float64(v[0]) - 0.5), nil
	}
}

func TestGreedyKeepsAndDrops(t *testing.T) {
	root := t.TempDir()
	cfg := tinyConfig(t)
	// norm[0] per candidate; binary fractions so every soup mean is exact.
	values := map[string]float32{"a": 0.625, "b": 0.25, "c": 1.0, "d": 0.4375}
	var dirs []string
	for _, name := range []string{"a", "b", "c", "d"} {
		d := filepath.Join(root, name)
		v := values[name]
		saveModel(t, d, cfg, uint64(len(dirs)+1), nil, func(m *transformer.Model) { m.W.Norm[0] = v })
		dirs = append(dirs, d)
	}
	// Scores alone: d -0.0625, a -0.125, b -0.25, c -0.5, so the order is d, a, b, c.
	// d+a: mean 0.53125, -0.03125: kept. +b: mean 0.4375, -0.0625: dropped.
	// +c: mean 0.6875, -0.1875: dropped.
	for _, dir := range []Direction{HigherIsBetter, LowerIsBetter} {
		t.Run(dir.String(), func(t *testing.T) {
			calls := 0
			score := normScore(&calls)
			if dir == LowerIsBetter {
				// The same metric as a loss: the distance itself.
				score = func(ctx context.Context, d string) (float64, error) {
					s, err := normScore(&calls)(ctx, d)
					return -s, err
				}
			}
			out := filepath.Join(root, "soup-"+dir.String())
			var seen []GreedyStep
			res, err := Greedy(context.Background(), out, dirs, GreedyOptions{Score: score, Direction: dir, OnStep: func(s GreedyStep) { seen = append(seen, s) }})
			require.NoError(t, err)
			assert.Equal(t, []string{dirs[3], dirs[0]}, res.Ingredients)
			require.Len(t, res.Steps, 4)
			assert.Equal(t, res.Steps, seen)
			order := []string{dirs[3], dirs[0], dirs[1], dirs[2]}
			kept := []bool{true, true, false, false}
			soup := []float64{0.0625, 0.03125, 0.0625, 0.1875}
			sign := -1.0
			if dir == LowerIsBetter {
				sign = 1
			}
			for i, s := range res.Steps {
				assert.Equal(t, order[i], s.Candidate)
				assert.Equal(t, kept[i], s.Kept, s.Candidate)
				assert.InDelta(t, sign*soup[i], s.SoupScore, 1e-7, s.Candidate)
			}
			assert.InDelta(t, sign*0.03125, res.Score, 1e-7)
			assert.Equal(t, 4+3, calls, "each candidate alone, then one trial soup per remaining candidate")
			assert.Equal(t, MethodGreedy, res.Method)
			// The output is exactly the uniform soup of the kept ingredients.
			ref := filepath.Join(root, "ref-"+dir.String())
			_, err = Uniform(context.Background(), ref, res.Ingredients, Options{})
			require.NoError(t, err)
			a, _ := readModel(t, out)
			b, _ := readModel(t, ref)
			assert.Equal(t, b, a)
			// No trial soups are left behind.
			matches, err := filepath.Glob(filepath.Join(root, ".soup-*"))
			require.NoError(t, err)
			assert.Empty(t, matches)
		})
	}
	t.Run("ties are kept", func(t *testing.T) {
		x, y := filepath.Join(root, "x"), filepath.Join(root, "y")
		saveModel(t, x, cfg, 5, nil, func(m *transformer.Model) { m.W.Norm[0] = 0.5 })
		saveModel(t, y, cfg, 6, nil, func(m *transformer.Model) { m.W.Norm[0] = 0.5 })
		calls := 0
		res, err := Greedy(context.Background(), filepath.Join(root, "tie"), []string{x, y}, GreedyOptions{Score: normScore(&calls), Direction: HigherIsBetter})
		require.NoError(t, err)
		assert.Equal(t, []string{x, y}, res.Ingredients)
	})
	t.Run("needs a score and a direction", func(t *testing.T) {
		_, err := Greedy(context.Background(), filepath.Join(root, "n1"), dirs, GreedyOptions{Direction: HigherIsBetter})
		require.ErrorContains(t, err, "score function")
		calls := 0
		_, err = Greedy(context.Background(), filepath.Join(root, "n2"), dirs, GreedyOptions{Score: normScore(&calls)})
		require.ErrorContains(t, err, "direction")
		_, err = Greedy(context.Background(), filepath.Join(root, "n3"), dirs, GreedyOptions{Direction: LowerIsBetter,
			Score: func(context.Context, string) (float64, error) { return math.NaN(), nil }})
		require.ErrorContains(t, err, "is NaN")
	})
}

// rewriteWeights rewrites dir's model.safetensors through edit (names, shapes, data).
func rewriteWeights(t *testing.T, dir string, edit func([]safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	got, names := readModel(t, dir)
	r, err := safetensors.Open(filepath.Join(dir, checkpoint.WeightsFile))
	require.NoError(t, err)
	var ts []safetensors.Tensor
	for _, info := range r.Tensors() {
		ts = append(ts, safetensors.Tensor{Name: info.Name, Shape: info.Shape, Data: got[info.Name]})
	}
	require.NoError(t, r.Close())
	require.Len(t, ts, len(names))
	require.NoError(t, safetensors.WriteFile(context.Background(), filepath.Join(dir, checkpoint.WeightsFile), edit(ts), nil))
}

func TestRefusesToMix(t *testing.T) {
	root := t.TempDir()
	cfg := tinyConfig(t)
	tok := tokenizerJSON(t)
	base := filepath.Join(root, "base")
	saveModel(t, base, cfg, 1, tok, nil)
	mk := func(name string, c transformer.Config, tj []byte, after func(dir string)) string {
		d := filepath.Join(root, name)
		saveModel(t, d, c, 2, tj, nil)
		if after != nil {
			after(d)
		}
		return d
	}
	deeper := cfg
	deeper.NumHiddenLayers = 3
	wider := cfg
	wider.IntermediateSize = 192
	classifier := cfg
	classifier.Architectures = []string{transformer.ArchSequenceClassifier}
	otherTok := append([]byte(nil), tok...)
	otherTok = append(otherTok[:len(otherTok)-1], []byte(" \n}")...) // same JSON, different bytes
	otherTok[len(otherTok)-1] = '}'
	cases := []struct {
		name string
		dir  string
		want string
	}{
		{"architecture", mk("rm", classifier, tok, nil), "cannot mix architectures: " + base + " is a LlamaForCausalLM, " + filepath.Join(root, "rm") + " is a LlamaForSequenceClassification"},
		{"layers", mk("deep", deeper, tok, nil), "config.json num_hidden_layers is 2 in " + base + " but 3 in " + filepath.Join(root, "deep")},
		{"shapes via config", mk("wide", wider, tok, nil), "intermediate_size is 176"},
		{"tensor shape", mk("reshaped", cfg, tok, func(d string) {
			rewriteWeights(t, d, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == "model.norm.weight" {
						ts[i].Shape = []int{2, 32}
					}
				}
				return ts
			})
		}), `tensor "model.norm.weight" has shape [64] in ` + base + ` but [2 32] in ` + filepath.Join(root, "reshaped")},
		{"missing tensor", mk("missing", cfg, tok, func(d string) {
			rewriteWeights(t, d, func(ts []safetensors.Tensor) []safetensors.Tensor {
				var out []safetensors.Tensor
				for _, x := range ts {
					if x.Name != "model.layers.1.mlp.up_proj.weight" {
						out = append(out, x)
					}
				}
				return out
			})
		}), `tensor "model.layers.1.mlp.up_proj.weight" of ` + base + ` is missing from ` + filepath.Join(root, "missing")},
		{"extra tensor", mk("extra", cfg, tok, func(d string) {
			rewriteWeights(t, d, func(ts []safetensors.Tensor) []safetensors.Tensor {
				return append(ts, safetensors.Tensor{Name: "extra.bias", Shape: []int{1}, Data: []float32{1}})
			})
		}), `tensor "extra.bias" of ` + filepath.Join(root, "extra") + ` is missing from ` + base},
		{"different tokenizer", mk("othertok", cfg, otherTok, nil), "cannot mix tokenizers: tokenizer.json of " + base},
		{"no tokenizer", mk("notok", cfg, nil, nil), "cannot mix tokenizers: " + base + " has a tokenizer.json but " + filepath.Join(root, "notok") + " has none"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Check([]string{base, tc.dir})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			out := filepath.Join(root, "out-"+tc.name)
			_, err = Uniform(context.Background(), out, []string{base, tc.dir}, Options{})
			require.ErrorContains(t, err, tc.want)
			_, statErr := os.Stat(out)
			assert.True(t, os.IsNotExist(statErr), "a refused soup writes nothing")
		})
	}
	// Models without tokenizers mix with each other.
	a, b := filepath.Join(root, "nt1"), filepath.Join(root, "nt2")
	saveModel(t, a, cfg, 3, nil, nil)
	saveModel(t, b, cfg, 4, nil, nil)
	_, err := Uniform(context.Background(), filepath.Join(root, "ntsoup"), []string{a, b}, Options{})
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(root, "ntsoup", checkpoint.TokenizerFile))
	assert.True(t, os.IsNotExist(err))
	// Output rules.
	_, err = Uniform(context.Background(), a, []string{a, b}, Options{Overwrite: true})
	require.ErrorContains(t, err, "is also an input")
	_, err = Uniform(context.Background(), filepath.Join(root, "ntsoup"), []string{a, b}, Options{})
	require.ErrorContains(t, err, "not empty")
	_, err = Uniform(context.Background(), filepath.Join(root, "ntsoup"), []string{b, a}, Options{Overwrite: true})
	require.NoError(t, err)
	_, err = Uniform(context.Background(), filepath.Join(root, "none"), nil, Options{})
	require.ErrorContains(t, err, "no input models")
	_, err = Uniform(context.Background(), filepath.Join(root, "none"), []string{filepath.Join(root, "absent")}, Options{})
	require.ErrorContains(t, err, "absent")
}

func TestStreamingMemoryDoesNotScaleWithInputs(t *testing.T) {
	root := t.TempDir()
	// About 0.85M parameters (3.4 MB); the embedding and lm_head are the largest tensors.
	cfg := tinyConfig(t)
	cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize = 2048, 128, 344
	var dirs []string
	for i := 0; i < 4; i++ {
		d := filepath.Join(root, string(rune('a'+i)))
		saveModel(t, d, cfg, uint64(i+1), nil, nil)
		dirs = append(dirs, d)
	}
	modelBytes := int64(4 * len(transformer.NewParams(cfg).Data))
	// peak is the most live heap above the starting point, sampled after every tensor,
	// and the bytes allocated in total.
	peak := func(n int) (int64, uint64) {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		base, alloc0 := int64(ms.HeapAlloc), ms.TotalAlloc
		var top int64
		_, err := Uniform(context.Background(), filepath.Join(root, "soup", string(rune('0'+n))), dirs[:n], Options{Progress: func(int, int) {
			// Collect first: HeapAlloc is then the live set while the soup's buffers
			// and every input's reader are held (transient read buffers are garbage).
			runtime.GC()
			runtime.ReadMemStats(&ms)
			top = max(top, int64(ms.HeapAlloc)-base)
		}})
		require.NoError(t, err)
		runtime.ReadMemStats(&ms)
		return top, ms.TotalAlloc - alloc0
	}
	one, alloc1 := peak(1)
	four, alloc4 := peak(4)
	t.Logf("model %d bytes; peak heap above start: N=1 %d, N=4 %d; total allocated: N=1 %d, N=4 %d", modelBytes, one, four, alloc1, alloc4)
	assert.Less(t, four, modelBytes+modelBytes/4, "peak memory stays about one model with 4 inputs")
	assert.Less(t, four-one, modelBytes/4, "peak memory does not grow with the number of inputs")
}

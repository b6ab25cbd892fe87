package checkpoint

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/transformer"
)

func testConfig(arch string, tied bool) transformer.Config {
	c := transformer.Config{
		Architectures: []string{arch}, ModelType: "llama",
		VocabSize: 19, HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, MaxPositionEmbeddings: 32,
		RMSNormEps: 1e-5, RopeTheta: 500000, HiddenAct: "silu", TorchDtype: "float32",
		InitializerRange: 0.02, TieWordEmbeddings: tied,
	}
	if arch == transformer.ArchSequenceClassifier {
		c.NumLabels = 1
	}
	return c
}

func newModel(t *testing.T, cfg transformer.Config, seed uint64) (*transformer.Model, *kernels.Pool) {
	t.Helper()
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(seed)
	// Give the norm gains distinct values so a swapped tensor would be noticed.
	for i := range m.W.Norm {
		m.W.Norm[i] = float32(i) + 0.5
	}
	return m, pool
}

func requireBitEqual(t *testing.T, want, got []float32) {
	t.Helper()
	require.Equal(t, len(want), len(got))
	for i := range want {
		require.Equal(t, math.Float32bits(want[i]), math.Float32bits(got[i]), "element %d", i)
	}
}

func TestSaveLoadBitExact(t *testing.T) {
	cases := []struct {
		name string
		cfg  transformer.Config
	}{
		{"causal untied", testConfig(transformer.ArchCausalLM, false)},
		{"causal tied", testConfig(transformer.ArchCausalLM, true)},
		{"classifier", testConfig(transformer.ArchSequenceClassifier, false)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, pool := newModel(t, c.cfg, 7)
			dir := filepath.Join(t.TempDir(), "ckpt")
			require.NoError(t, Save(context.Background(), dir, m, SaveOptions{}))
			got, err := Load(context.Background(), dir, pool)
			require.NoError(t, err)
			assert.Equal(t, m.Config, got.Config)
			requireBitEqual(t, m.W.Data, got.W.Data)

			r, err := safetensors.Open(filepath.Join(dir, WeightsFile))
			require.NoError(t, err)
			defer r.Close()
			_, hasHead := r.Lookup("lm_head.weight")
			assert.Equal(t, c.cfg.Architectures[0] == transformer.ArchCausalLM && !c.cfg.TieWordEmbeddings, hasHead)
			_, hasScore := r.Lookup("score.weight")
			assert.Equal(t, c.cfg.IsSequenceClassifier(), hasScore)
			assert.Equal(t, "pt", r.Metadata()["format"])
			for _, ti := range r.Tensors() {
				assert.Equal(t, safetensors.F32, ti.DType)
			}
		})
	}
}

func TestSaveAtomicAndOverwrite(t *testing.T) {
	ctx := context.Background()
	m, pool := newModel(t, testConfig(transformer.ArchCausalLM, false), 1)
	parent := t.TempDir()
	dir := filepath.Join(parent, "ckpt")
	require.NoError(t, Save(ctx, dir, m, SaveOptions{}))

	m2, _ := newModel(t, testConfig(transformer.ArchCausalLM, false), 2)
	err := Save(ctx, dir, m2, SaveOptions{})
	require.ErrorContains(t, err, "directory is not empty")
	got, err := Load(ctx, dir, pool)
	require.NoError(t, err)
	requireBitEqual(t, m.W.Data, got.W.Data)

	require.NoError(t, Save(ctx, dir, m2, SaveOptions{Overwrite: true}))
	got, err = Load(ctx, dir, pool)
	require.NoError(t, err)
	requireBitEqual(t, m2.W.Data, got.W.Data)

	// A trailing slash names the same directory.
	slash := filepath.Join(parent, "slash") + "/"
	require.NoError(t, Save(ctx, slash, m, SaveOptions{}))
	got, err = Load(ctx, slash, pool)
	require.NoError(t, err)
	requireBitEqual(t, m.W.Data, got.W.Data)

	// An empty pre-created directory is fine.
	empty := filepath.Join(parent, "empty")
	require.NoError(t, os.Mkdir(empty, 0o755))
	require.NoError(t, Save(ctx, empty, m, SaveOptions{}))

	// A cancelled save leaves nothing behind.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	require.ErrorIs(t, Save(cctx, filepath.Join(parent, "cancelled"), m, SaveOptions{}), context.Canceled)

	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"ckpt", "empty", "slash"}, names, "no temporary directories left")
}

func TestSaveTokenizer(t *testing.T) {
	ctx := context.Background()
	m, _ := newModel(t, testConfig(transformer.ArchCausalLM, true), 1)
	root := t.TempDir()
	tokJSON := []byte(`{"version":"1.0","model":{"type":"BPE"}}`)
	src := filepath.Join(root, "tok.json")
	require.NoError(t, os.WriteFile(src, tokJSON, 0o644))

	cases := []struct {
		name    string
		opts    SaveOptions
		want    []byte
		wantErr string
	}{
		{"none", SaveOptions{}, nil, ""},
		{"bytes", SaveOptions{TokenizerJSON: tokJSON}, tokJSON, ""},
		{"file", SaveOptions{TokenizerFrom: src}, tokJSON, ""},
		// An existing directory without tokenizer.json passes on none.
		{"dir without tokenizer", SaveOptions{TokenizerFrom: filepath.Join(root, "none-dir")}, nil, ""},
		{"missing source", SaveOptions{TokenizerFrom: filepath.Join(root, "absent.json")}, nil, "tokenizer source"},
		{"invalid json", SaveOptions{TokenizerJSON: []byte("{")}, nil, "not valid JSON"},
	}
	require.NoError(t, os.Mkdir(filepath.Join(root, "none-dir"), 0o755))
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(root, fmt.Sprint("out", i))
			err := Save(ctx, dir, m, c.opts)
			if c.wantErr != "" {
				require.ErrorContains(t, err, c.wantErr)
				return
			}
			require.NoError(t, err)
			p, ok := TokenizerPath(dir)
			require.Equal(t, c.want != nil, ok)
			if ok {
				got, err := os.ReadFile(p)
				require.NoError(t, err)
				assert.Equal(t, c.want, got)
				// A checkpoint directory is itself a tokenizer source.
				dir2 := filepath.Join(root, fmt.Sprint("copy", i))
				require.NoError(t, Save(ctx, dir2, m, SaveOptions{TokenizerFrom: dir}))
				got2, err := os.ReadFile(filepath.Join(dir2, TokenizerFile))
				require.NoError(t, err)
				assert.Equal(t, c.want, got2)
			}
		})
	}
}

// writeWeights writes a safetensors file for dir from m's tensors, edited by edit.
func writeWeights(t *testing.T, dir string, m *transformer.Model, edit func([]safetensors.Tensor) []safetensors.Tensor) {
	t.Helper()
	var ts []safetensors.Tensor
	for _, x := range m.W.Tensors {
		ts = append(ts, safetensors.Tensor{Name: x.Name, Shape: x.Shape, Data: x.Data})
	}
	require.NoError(t, safetensors.WriteFile(context.Background(), filepath.Join(dir, WeightsFile), edit(ts), nil))
}

func TestLoadRejectsMismatchedTensors(t *testing.T) {
	ctx := context.Background()
	m, pool := newModel(t, testConfig(transformer.ArchCausalLM, false), 3)
	without := func(name string) func([]safetensors.Tensor) []safetensors.Tensor {
		return func(ts []safetensors.Tensor) []safetensors.Tensor {
			var out []safetensors.Tensor
			for _, x := range ts {
				if x.Name != name {
					out = append(out, x)
				}
			}
			return out
		}
	}
	cases := []struct {
		name string
		edit func([]safetensors.Tensor) []safetensors.Tensor
		want []string
	}{
		{"missing", without("model.layers.1.mlp.up_proj.weight"), []string{"missing tensors: model.layers.1.mlp.up_proj.weight"}},
		{"unexpected", func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "model.layers.2.mlp.up_proj.weight", Shape: []int{1}, Data: []float32{1}})
		}, []string{"unexpected tensors: model.layers.2.mlp.up_proj.weight"}},
		{"shape", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == "model.norm.weight" {
					ts[i].Shape = []int{4, 4}
				}
			}
			return ts
		}, []string{"wrong shapes: model.norm.weight has shape [4 4], config wants [16]"}},
		{"several", func(ts []safetensors.Tensor) []safetensors.Tensor {
			ts = without("lm_head.weight")(ts)
			return append(ts, safetensors.Tensor{Name: "extra", Shape: []int{1}, Data: []float32{1}})
		}, []string{"missing tensors: lm_head.weight", "unexpected tensors: extra"}},
		{"nan", func(ts []safetensors.Tensor) []safetensors.Tensor {
			for i := range ts {
				if ts[i].Name == "model.layers.0.self_attn.k_proj.weight" {
					d := append([]float32(nil), ts[i].Data...)
					d[3] = float32(math.NaN())
					ts[i].Data = d
				}
			}
			return ts
		}, []string{`tensor "model.layers.0.self_attn.k_proj.weight" holds NaN`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ckpt")
			require.NoError(t, Save(ctx, dir, m, SaveOptions{}))
			writeWeights(t, dir, m, c.edit)
			_, err := Load(ctx, dir, pool)
			require.Error(t, err)
			for _, w := range c.want {
				assert.ErrorContains(t, err, w)
			}
			assert.ErrorContains(t, err, dir)
		})
	}

	t.Run("bad config", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ckpt")
		require.NoError(t, Save(ctx, dir, m, SaveOptions{}))
		require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"vocab_size": 0}`), 0o644))
		_, err := Load(ctx, dir, pool)
		require.ErrorContains(t, err, "vocab_size must be > 0")
	})
	t.Run("unsupported HF options", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ckpt")
		require.NoError(t, Save(ctx, dir, m, SaveOptions{}))
		path := filepath.Join(dir, ConfigFile)
		raw, err := os.ReadFile(path)
		require.NoError(t, err)
		var keys map[string]any
		require.NoError(t, json.Unmarshal(raw, &keys))
		for _, c := range []struct {
			key  string
			val  any
			fail bool
		}{
			{"rope_scaling", map[string]any{"rope_type": "llama3", "factor": 8.0}, true},
			{"attention_bias", true, true},
			{"mlp_bias", true, true},
			{"rope_scaling", nil, false},
			{"attention_bias", false, false},
		} {
			edited := map[string]any{}
			for k, v := range keys {
				edited[k] = v
			}
			edited[c.key] = c.val
			out, err := json.Marshal(edited)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, out, 0o644))
			_, err = Load(ctx, dir, pool)
			if c.fail {
				require.ErrorContains(t, err, c.key+" = ")
				require.ErrorContains(t, err, "is not supported")
				_, err = LoadAsClassifier(ctx, dir, pool, ScoreInit{})
				require.ErrorContains(t, err, c.key)
			} else {
				require.NoError(t, err, "%s = %v is the default", c.key, c.val)
			}
		}
	})
	t.Run("no weights", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "ckpt")
		require.NoError(t, Save(ctx, dir, m, SaveOptions{}))
		require.NoError(t, os.Remove(filepath.Join(dir, WeightsFile)))
		_, err := Load(ctx, dir, pool)
		require.ErrorContains(t, err, WeightsFile)
	})
}

func TestLoadTiedWithExplicitHead(t *testing.T) {
	ctx := context.Background()
	m, pool := newModel(t, testConfig(transformer.ArchCausalLM, true), 4)
	withHead := func(data []float32) func([]safetensors.Tensor) []safetensors.Tensor {
		return func(ts []safetensors.Tensor) []safetensors.Tensor {
			return append(ts, safetensors.Tensor{Name: "lm_head.weight", Shape: []int{19, 16}, Data: data})
		}
	}
	dir := filepath.Join(t.TempDir(), "ckpt")
	require.NoError(t, Save(ctx, dir, m, SaveOptions{}))
	writeWeights(t, dir, m, withHead(m.W.Embed))
	got, err := Load(ctx, dir, pool)
	require.NoError(t, err, "a duplicate of the tied embedding is accepted")
	requireBitEqual(t, m.W.Data, got.W.Data)

	other := append([]float32(nil), m.W.Embed...)
	other[0]++
	writeWeights(t, dir, m, withHead(other))
	_, err = Load(ctx, dir, pool)
	require.ErrorContains(t, err, "lm_head.weight differs from model.embed_tokens.weight")
}

// writeBF16 writes m's tensors as BF16 (truncated), as a half-precision HF export would.
func writeBF16(t *testing.T, path string, m *transformer.Model) {
	t.Helper()
	var hdr strings.Builder
	var data bytes.Buffer
	hdr.WriteString("{")
	for i, x := range m.W.Tensors {
		if i > 0 {
			hdr.WriteString(",")
		}
		shape, _ := json.Marshal(x.Shape)
		fmt.Fprintf(&hdr, `%q:{"dtype":"BF16","shape":%s,"data_offsets":[%d,%d]}`, x.Name, shape, data.Len(), data.Len()+2*len(x.Data))
		for _, v := range x.Data {
			binary.Write(&data, binary.LittleEndian, uint16(math.Float32bits(v)>>16))
		}
	}
	hdr.WriteString("}")
	var f bytes.Buffer
	binary.Write(&f, binary.LittleEndian, uint64(hdr.Len()))
	f.WriteString(hdr.String())
	f.Write(data.Bytes())
	require.NoError(t, os.WriteFile(path, f.Bytes(), 0o644))
}

func TestLoadBF16Converts(t *testing.T) {
	ctx := context.Background()
	m, pool := newModel(t, testConfig(transformer.ArchCausalLM, false), 5)
	dir := filepath.Join(t.TempDir(), "ckpt")
	require.NoError(t, Save(ctx, dir, m, SaveOptions{}))
	writeBF16(t, filepath.Join(dir, WeightsFile), m)
	got, err := Load(ctx, dir, pool)
	require.NoError(t, err)
	for i, v := range m.W.Data {
		want := math.Float32frombits(math.Float32bits(v) &^ 0xffff)
		require.Equal(t, want, got.W.Data[i], "element %d", i)
	}
}

func TestLoadAsClassifier(t *testing.T) {
	ctx := context.Background()
	for _, tied := range []bool{false, true} {
		t.Run(fmt.Sprint("tied=", tied), func(t *testing.T) {
			m, pool := newModel(t, testConfig(transformer.ArchCausalLM, tied), 6)
			dir := filepath.Join(t.TempDir(), "ckpt")
			require.NoError(t, Save(ctx, dir, m, SaveOptions{}))

			zero, err := LoadAsClassifier(ctx, dir, pool, ScoreInit{})
			require.NoError(t, err)
			assert.True(t, zero.Config.IsSequenceClassifier())
			assert.False(t, zero.Config.TieWordEmbeddings)
			assert.Equal(t, 1, zero.Config.NumLabels)
			assert.Nil(t, zero.W.LMHead)
			require.Len(t, zero.W.Score, 16)
			assert.Equal(t, make([]float32, 16), zero.W.Score)
			for _, x := range m.W.Tensors {
				if x.Name == "lm_head.weight" {
					continue
				}
				y, ok := zero.W.Lookup(x.Name)
				require.True(t, ok, x.Name)
				requireBitEqual(t, x.Data, y.Data)
			}

			a, err := LoadAsClassifier(ctx, dir, pool, ScoreInit{Seed: 9, Std: 0.02})
			require.NoError(t, err)
			b, err := LoadAsClassifier(ctx, dir, pool, ScoreInit{Seed: 9, Std: 0.02})
			require.NoError(t, err)
			c, err := LoadAsClassifier(ctx, dir, pool, ScoreInit{Seed: 10, Std: 0.02})
			require.NoError(t, err)
			requireBitEqual(t, a.W.Score, b.W.Score)
			assert.NotEqual(t, a.W.Score, c.W.Score)
			var ss float64
			for _, v := range a.W.Score {
				ss += float64(v) * float64(v)
			}
			assert.InDelta(t, 0.02, math.Sqrt(ss/16), 0.012)

			// The reward model saves and reloads as a classifier, score included.
			rdir := filepath.Join(t.TempDir(), "rm")
			require.NoError(t, Save(ctx, rdir, a, SaveOptions{}))
			back, err := Load(ctx, rdir, pool)
			require.NoError(t, err)
			assert.True(t, back.Config.IsSequenceClassifier())
			requireBitEqual(t, a.W.Data, back.W.Data)
			again, err := LoadAsClassifier(ctx, rdir, pool, ScoreInit{Seed: 1, Std: 1})
			require.NoError(t, err)
			requireBitEqual(t, a.W.Score, again.W.Score)

			_, err = LoadAsClassifier(ctx, dir, pool, ScoreInit{Std: -1})
			require.ErrorContains(t, err, "std")
		})
	}
}

func TestInfo(t *testing.T) {
	ctx := context.Background()
	m, _ := newModel(t, testConfig(transformer.ArchCausalLM, false), 8)
	dir := filepath.Join(t.TempDir(), "ckpt")
	require.NoError(t, Save(ctx, dir, m, SaveOptions{TokenizerJSON: []byte("{}")}))
	s, err := Info(dir)
	require.NoError(t, err)
	assert.Equal(t, transformer.ArchCausalLM, s.Architecture)
	assert.Equal(t, int64(len(m.W.Data)), s.Parameters)
	assert.Equal(t, len(m.W.Tensors), s.Tensors)
	assert.Equal(t, map[string]int{"F32": len(m.W.Tensors)}, s.DTypes)
	assert.True(t, s.HasTokenizer)
	var names []string
	var total int64
	for _, f := range s.Files {
		names = append(names, f.Name)
		total += f.Bytes
		assert.Positive(t, f.Bytes)
	}
	assert.Equal(t, []string{ConfigFile, WeightsFile, TokenizerFile}, names)
	assert.Equal(t, total, s.TotalBytes)
	assert.Greater(t, s.TotalBytes, int64(4*len(m.W.Data)))

	_, err = Info(filepath.Join(dir, "nope"))
	require.ErrorContains(t, err, "nope")
}

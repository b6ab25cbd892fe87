package inference

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/transformer"
)

func testConfig() transformer.Config {
	return transformer.Config{
		Architectures: []string{transformer.ArchCausalLM}, ModelType: "llama",
		VocabSize: 37, HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, MaxPositionEmbeddings: 64,
		RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu", InitializerRange: 0.15,
	}
}

// newModel builds a random model whose logits vary enough to make comparisons meaningful.
func newModel(t testing.TB, cfg transformer.Config, workers int) *transformer.Model {
	t.Helper()
	pool := kernels.NewPool(workers)
	t.Cleanup(pool.Close)
	return newModelOn(t, cfg, pool)
}

// newModelOn is newModel on a given pool; the weights depend only on cfg.
func newModelOn(t testing.TB, cfg transformer.Config, pool *kernels.Pool) *transformer.Model {
	t.Helper()
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(3)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, ts := range m.W.Tensors {
		if len(ts.Shape) == 1 {
			for i := range ts.Data {
				ts.Data[i] = float32(0.5 + rng.Float64())
			}
		}
	}
	return m
}

func randTokens(rng *rand.Rand, n, vocab int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(rng.IntN(vocab))
	}
	return out
}

// fullLogits runs the training forward on whole sequences and returns logits per row.
func fullLogits(t *testing.T, m *transformer.Model, rows [][]int32) [][]float32 {
	t.Helper()
	T := len(rows[0])
	b := &transformer.Batch{B: len(rows), T: T, Tokens: make([]int32, len(rows)*T), Targets: make([]int32, len(rows)*T)}
	for r, row := range rows {
		require.Len(t, row, T)
		copy(b.Tokens[r*T:], row)
	}
	ws := m.NewWorkspace(len(rows), T)
	require.NoError(t, m.Forward(ws, b))
	out := make([][]float32, len(rows))
	V := m.Config.VocabSize
	for r := range rows {
		out[r] = append([]float32(nil), ws.Logits[r*T*V:(r+1)*T*V]...)
	}
	return out
}

// relErr is max|a-b| / max|b|.
func relErr(a, b []float32) float64 {
	var d, s float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = max(s, math.Abs(float64(b[i])))
	}
	return d / s
}

// TestCachedLogitsMatchFullForward teacher-forces K samples of two prompts through the
// cache (all decoded in the same steps, each prompt's prefix shared) and compares every
// step's logits with the training forward over the whole sequence.
func TestCachedLogitsMatchFullForward(t *testing.T) {
	for _, workers := range []int{1, 2} {
		m := newModel(t, testConfig(), workers)
		e, err := NewEngine(m, Options{MaxBatch: 8})
		require.NoError(t, err)
		rng := rand.New(rand.NewPCG(1, uint64(workers)))
		V := m.Config.VocabSize
		prompts := [][]int32{randTokens(rng, 9, V), randTokens(rng, 9, V)}
		const K, steps = 3, 12
		var seqs []*Sequence
		var forced [][]int32
		var full [][]int32
		ctx := context.Background()
		for _, pr := range prompts {
			p, err := e.Prefill(ctx, pr)
			require.NoError(t, err)
			for range K {
				s, err := e.NewSequence(p, steps)
				require.NoError(t, err)
				seqs = append(seqs, s)
				f := randTokens(rng, steps, V)
				forced = append(forced, f)
				full = append(full, append(append([]int32(nil), pr...), f...))
			}
		}
		ref := fullLogits(t, m, full)
		P := len(prompts[0])
		for i, s := range seqs {
			got := s.Prefix().Logits()
			want := ref[i][(P-1)*V : P*V]
			require.LessOrEqual(t, relErr(got, want), 1e-4, "prefix logits of sample %d", i)
		}
		feed := make([]int32, len(seqs))
		for step := range steps {
			for i := range seqs {
				feed[i] = forced[i][step]
			}
			logits, err := e.Decode(seqs, feed)
			require.NoError(t, err)
			for i := range seqs {
				got := logits[i*V : (i+1)*V]
				want := ref[i][(P+step)*V : (P+step+1)*V]
				require.LessOrEqual(t, relErr(got, want), 1e-4, "workers %d sample %d step %d", workers, i, step)
			}
		}
		st := e.Stats()
		assert.Equal(t, int64(2*P), st.PrefillTokens, "each prompt is prefilled exactly once")
		assert.Equal(t, int64(2), st.Prompts)
		assert.Equal(t, int64(len(seqs)*steps), st.DecodeTokens)
		_, err = e.Decode(seqs[:1], feed[:1])
		require.ErrorContains(t, err, "is full")
		fresh, err := e.NewSequence(seqs[0].Prefix(), 2)
		require.NoError(t, err)
		_, err = e.Decode([]*Sequence{fresh, fresh}, feed[:2])
		require.ErrorContains(t, err, "sequence 1 appears twice")
		_, err = e.Decode([]*Sequence{fresh}, []int32{99})
		require.ErrorContains(t, err, "decode token 99 at index 0 is outside the vocabulary")
	}
}

func TestGenerateSharesPrefixAndIsDeterministic(t *testing.T) {
	m := newModel(t, testConfig(), 2)
	e, err := NewEngine(m, Options{MaxBatch: 16})
	require.NoError(t, err)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(2, 2))
	prompt := randTokens(rng, 11, 37)
	req := Request{Prompt: prompt, Samples: 6, Params: Params{MaxNewTokens: 20, Temperature: 1, Seed: 42, LogProbs: true}}
	a, err := e.Generate(ctx, req)
	require.NoError(t, err)
	st := e.Stats()
	assert.Equal(t, int64(11), st.PrefillTokens, "the prompt is prefilled once for all samples")
	assert.Equal(t, int64(5*11), st.PrefillTokensSaved)
	assert.Equal(t, int64(6*20), st.SampledTokens)
	assert.Equal(t, int64(6*19), st.DecodeTokens, "the last token of each sample is never fed")
	require.Len(t, a, 6)
	distinct := map[string]bool{}
	for _, c := range a {
		require.Len(t, c.Tokens, 20)
		require.Len(t, c.LogProbs, 20)
		assert.Equal(t, FinishLength, c.FinishReason)
		distinct[string(int32sToBytes(c.Tokens))] = true
		for _, lp := range c.LogProbs {
			assert.Less(t, lp, float32(0))
		}
	}
	assert.Greater(t, len(distinct), 1, "samples differ from each other")

	b, err := e.Generate(ctx, req)
	require.NoError(t, err)
	assert.Equal(t, a, b, "same seed, same completions")

	req.Params.Seed = 43
	c, err := e.Generate(ctx, req)
	require.NoError(t, err)
	assert.NotEqual(t, a, c, "another seed, other completions")

	// The same request inside a larger batch (sharing steps with another prompt, and with a
	// small MaxBatch so samples start at different times) yields the same completions.
	small, err := NewEngine(m, Options{MaxBatch: 4})
	require.NoError(t, err)
	req.Params.Seed = 42
	other := Request{Prompt: randTokens(rng, 5, 37), Samples: 3, Params: Params{MaxNewTokens: 7, Temperature: 0.7, TopK: 5, Seed: 1}}
	both, err := small.GenerateBatch(ctx, []Request{other, req}, nil)
	require.NoError(t, err)
	assert.Equal(t, a, both[1])
	assert.Len(t, both[0], 3)
	assert.Equal(t, int64(16), small.Stats().PrefillTokens)
}

// TestLogProbsMatchForward checks the reported token log-probabilities against the
// training forward's log-softmax of the generated sequence.
func TestLogProbsMatchForward(t *testing.T) {
	m := newModel(t, testConfig(), 1)
	e, err := NewEngine(m, Options{})
	require.NoError(t, err)
	prompt := []int32{1, 2, 3, 4, 5}
	out, err := e.Generate(context.Background(), Request{Prompt: prompt, Samples: 1, Params: Params{MaxNewTokens: 8, Temperature: 1.3, TopP: 0.9, Seed: 7, LogProbs: true}})
	require.NoError(t, err)
	c := out[0]
	seq := append(append([]int32(nil), prompt...), c.Tokens...)
	T := len(seq) - 1
	b := &transformer.Batch{B: 1, T: T, Tokens: seq[:T], Targets: seq[1:]}
	ws := m.NewWorkspace(1, T)
	require.NoError(t, m.Forward(ws, b))
	for i, lp := range c.LogProbs {
		assert.InDelta(t, ws.LogProbs[len(prompt)-1+i], lp, 1e-4, "token %d", i)
	}
}

func TestGreedyMatchesArgmaxAndStops(t *testing.T) {
	m := newModel(t, testConfig(), 1)
	e, err := NewEngine(m, Options{})
	require.NoError(t, err)
	ctx := context.Background()
	prompt := []int32{3, 1, 4, 1, 5}
	out, err := e.Generate(ctx, Request{Prompt: prompt, Samples: 2, Params: Params{MaxNewTokens: 10, Greedy: true, Seed: 1}})
	require.NoError(t, err)
	assert.Equal(t, out[0], out[1], "greedy samples agree")
	// Each greedy token is the argmax of the full forward's logits.
	seq := append(append([]int32(nil), prompt...), out[0].Tokens...)
	ref := fullLogits(t, m, [][]int32{seq})[0]
	V := 37
	for i, tok := range out[0].Tokens {
		row := ref[(len(prompt)-1+i)*V : (len(prompt)+i)*V]
		best := 0
		for j := range row {
			if row[j] > row[best] {
				best = j
			}
		}
		assert.Equal(t, int32(best), tok, "token %d", i)
	}
	// One new token comes straight from the prompt's logits, with no decode step.
	decodes := e.Stats().DecodeTokens
	one, err := e.Generate(ctx, Request{Prompt: prompt, Samples: 3, Params: Params{MaxNewTokens: 1, Greedy: true}})
	require.NoError(t, err)
	for _, c := range one {
		assert.Equal(t, out[0].Tokens[:1], c.Tokens)
		assert.Equal(t, FinishLength, c.FinishReason)
	}
	assert.Equal(t, decodes, e.Stats().DecodeTokens)
	// Stopping at the third token's id ends the sample at its first occurrence.
	stop := out[0].Tokens[2]
	first := 0
	for out[0].Tokens[first] != stop {
		first++
	}
	stopped, err := e.Generate(ctx, Request{Prompt: prompt, Samples: 1, Params: Params{MaxNewTokens: 10, Temperature: 0, StopTokens: []int32{36, stop}}})
	require.NoError(t, err)
	assert.Equal(t, out[0].Tokens[:first+1], stopped[0].Tokens)
	assert.Equal(t, FinishStop, stopped[0].FinishReason)
}

func TestRejectsBadRequests(t *testing.T) {
	m := newModel(t, testConfig(), 1)
	e, err := NewEngine(m, Options{})
	require.NoError(t, err)
	ok := Params{MaxNewTokens: 4, Temperature: 1}
	cases := []struct {
		name string
		req  Request
		want string
	}{
		{"context", Request{Prompt: make([]int32, 60), Samples: 1, Params: Params{MaxNewTokens: 5, Temperature: 1}}, "exceeds max_position_embeddings=64"},
		{"empty prompt", Request{Samples: 1, Params: ok}, "empty prompt"},
		{"vocab", Request{Prompt: []int32{1, 37}, Samples: 1, Params: ok}, "prompt token 37 at index 1 is outside the vocabulary"},
		{"samples", Request{Prompt: []int32{1}, Params: ok}, "samples must be > 0"},
		{"max new", Request{Prompt: []int32{1}, Samples: 1}, "max_new_tokens must be > 0"},
		{"temperature", Request{Prompt: []int32{1}, Samples: 1, Params: Params{MaxNewTokens: 1, Temperature: -1}}, "temperature"},
		{"top_p", Request{Prompt: []int32{1}, Samples: 1, Params: Params{MaxNewTokens: 1, Temperature: 1, TopP: 1.5}}, "top_p"},
		{"top_k", Request{Prompt: []int32{1}, Samples: 1, Params: Params{MaxNewTokens: 1, Temperature: 1, TopK: -2}}, "top_k"},
		{"stop", Request{Prompt: []int32{1}, Samples: 1, Params: Params{MaxNewTokens: 1, Temperature: 1, StopTokens: []int32{99}}}, "stop token 99"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.Generate(context.Background(), c.req)
			require.ErrorContains(t, err, c.want)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.Generate(ctx, Request{Prompt: []int32{1}, Samples: 1, Params: ok})
	require.ErrorIs(t, err, context.Canceled)

	cls := testConfig()
	cls.Architectures = []string{transformer.ArchSequenceClassifier}
	rm := newModel(t, cls, 1)
	_, err = NewEngine(rm, Options{})
	require.ErrorContains(t, err, "sequence classifier")
}

func TestKVBytes(t *testing.T) {
	cfg, err := transformer.Preset("bench")
	require.NoError(t, err)
	// 4 layers x (k+v) x 4 kv heads x 32 dims x 4 bytes.
	assert.Equal(t, int64(4*2*4*32*4), KVBytesPerToken(cfg))
	assert.Equal(t, int64(4096)*(64+16*128), RequestKVBytes(cfg, 64, 16, 128))
}

// TestDecodeAllocatesNothing checks steady-state decode and sampling steps allocate nothing
// once warm (the sgemm's packing buffers grow to the largest shapes seen, so a first
// generation of full length warms them).
func TestDecodeAllocatesNothing(t *testing.T) {
	m := newModel(t, testConfig(), 2)
	e, err := NewEngine(m, Options{MaxBatch: 4})
	require.NoError(t, err)
	p, err := e.Prefill(context.Background(), []int32{1, 2, 3})
	require.NoError(t, err)
	feed := []int32{1, 2, 3, 4}
	e.ensureSampleState()
	params := &Params{MaxNewTokens: 50, Temperature: 0.8, TopK: 10, TopP: 0.9, LogProbs: true}
	for i := range 4 {
		e.sample.params[i] = params
		e.sample.rngs[i] = rand.New(rand.NewPCG(1, uint64(i)))
	}
	var seqs []*Sequence
	start := func() {
		for _, s := range seqs {
			e.ReleaseSequence(s)
		}
		seqs = seqs[:0]
		for range 4 {
			s, err := e.NewSequence(p, 50)
			require.NoError(t, err)
			seqs = append(seqs, s)
		}
	}
	step := func() {
		logits, err := e.Decode(seqs, feed)
		if err != nil {
			panic(err)
		}
		for i := range 4 {
			e.sample.rows[i] = logits[i*37 : (i+1)*37]
		}
		e.par(opSample, 4)
		copy(feed, e.sample.tokens[:4])
	}
	start()
	for range 50 {
		step()
	}
	start()
	allocs := testing.AllocsPerRun(40, step)
	assert.Zero(t, allocs)
	for _, s := range seqs {
		e.ReleaseSequence(s)
	}
	require.NoError(t, e.ReleasePrefix(p))
}

func int32sToBytes(v []int32) []byte {
	b := make([]byte, 0, 4*len(v))
	for _, x := range v {
		b = append(b, byte(x), byte(x>>8), byte(x>>16), byte(x>>24))
	}
	return b
}

func TestScorerMatchesEngineAndBatching(t *testing.T) {
	m := newModel(t, testConfig(), 2)
	e, err := NewEngine(m, Options{})
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(4, 4))
	var items []ScoreItem
	var want [][]float32
	for i := range 5 {
		prompt := randTokens(rng, 2+3*i, 37)
		out, err := e.Generate(context.Background(), Request{Prompt: prompt, Samples: 1, Params: Params{MaxNewTokens: 3 + i, Temperature: 1, Seed: uint64(i), LogProbs: true}})
		require.NoError(t, err)
		items = append(items, ScoreItem{Prompt: prompt, Completion: out[0].Tokens})
		want = append(want, out[0].LogProbs)
	}
	for _, batch := range []int{1, 2, 8} {
		s, err := NewScorer(m, batch)
		require.NoError(t, err)
		var calls []int
		got, err := s.Score(context.Background(), items, func(done int) { calls = append(calls, done) })
		require.NoError(t, err)
		assert.Equal(t, len(items), calls[len(calls)-1])
		for i := range items {
			require.Len(t, got[i].TokenLogProbs, len(items[i].Completion))
			var sum float64
			for j, lp := range got[i].TokenLogProbs {
				assert.InDelta(t, want[i][j], lp, 1e-4, "batch %d item %d token %d", batch, i, j)
				sum += float64(lp)
			}
			assert.InDelta(t, sum, got[i].LogProb, 1e-9)
		}
	}
	s, err := NewScorer(m, 4)
	require.NoError(t, err)
	bad := []struct {
		item ScoreItem
		want string
	}{
		{ScoreItem{Completion: []int32{1}}, "the prompt is empty"},
		{ScoreItem{Prompt: []int32{1}}, "the completion is empty"},
		{ScoreItem{Prompt: []int32{1}, Completion: []int32{2, 40}}, "completion token 40 at index 1 is outside the vocabulary"},
		{ScoreItem{Prompt: make([]int32, 60), Completion: make([]int32, 6)}, "exceed max_position_embeddings=64"},
	}
	for _, c := range bad {
		_, err := s.Score(context.Background(), []ScoreItem{items[0], c.item}, nil)
		require.ErrorContains(t, err, "item 1: ")
		require.ErrorContains(t, err, c.want)
	}
}

// TestSyncFollowsWeightUpdates checks the engine samples from its snapshot until Sync.
func TestSyncFollowsWeightUpdates(t *testing.T) {
	m := newModel(t, testConfig(), 1)
	e, err := NewEngine(m, Options{})
	require.NoError(t, err)
	ctx := context.Background()
	prompt := []int32{4, 8, 15, 16, 23, 42 % 37}
	before := fullLogits(t, m, [][]int32{prompt})[0]
	for i := range m.W.Layers[0].Up {
		m.W.Layers[0].Up[i] *= -2
	}
	after := fullLogits(t, m, [][]int32{prompt})[0]
	last := func(l []float32) []float32 { return l[(len(prompt)-1)*37:] }
	require.Greater(t, relErr(last(before), last(after)), 1e-2, "the update changes the logits")

	p, err := e.Prefill(ctx, prompt)
	require.NoError(t, err)
	assert.LessOrEqual(t, relErr(p.Logits(), last(before)), 1e-4, "snapshot until Sync")
	require.NoError(t, e.ReleasePrefix(p))
	e.Sync()
	p, err = e.Prefill(ctx, prompt)
	require.NoError(t, err)
	assert.LessOrEqual(t, relErr(p.Logits(), last(after)), 1e-4, "current weights after Sync")
}

// TestSameOutputAcrossThreadCounts checks that the worker count does not change samples.
func TestSameOutputAcrossThreadCounts(t *testing.T) {
	var outs [][]Completion
	for _, workers := range []int{1, 2, 3} {
		m := newModel(t, testConfig(), workers)
		e, err := NewEngine(m, Options{MaxBatch: 8})
		require.NoError(t, err)
		out, err := e.Generate(context.Background(), Request{Prompt: []int32{9, 8, 7, 6, 5, 4, 3, 2, 1}, Samples: 8,
			Params: Params{MaxNewTokens: 30, Temperature: 0.9, TopP: 0.95, Seed: 5, LogProbs: true}})
		require.NoError(t, err)
		outs = append(outs, out)
	}
	assert.Equal(t, outs[0], outs[1])
	assert.Equal(t, outs[0], outs[2])
}

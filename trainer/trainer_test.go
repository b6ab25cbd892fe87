package trainer

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/safetensors"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// regression is a linear least-squares problem y = X.w + b: a small, real training task
// whose loss is a mean over rows, so micro-batch accumulation is exactly checkable.
type regression struct {
	x    [][]float32
	y    []float32
	dim  int
	segs []Segment
}

func newRegression(rows, dim int, seed uint64) *regression {
	rng := rand.New(rand.NewPCG(seed, 7))
	r := &regression{dim: dim, segs: []Segment{{Name: "w", Offset: 0, Size: dim, Decay: true}, {Name: "b", Offset: dim, Size: 1}}}
	truth := make([]float64, dim)
	for j := range truth {
		truth[j] = rng.NormFloat64()
	}
	for i := 0; i < rows; i++ {
		row := make([]float32, dim)
		y := 0.5
		for j := range row {
			row[j] = float32(rng.NormFloat64())
			y += float64(row[j]) * truth[j]
		}
		r.x = append(r.x, row)
		r.y = append(r.y, float32(y+0.01*rng.NormFloat64()))
	}
	return r
}

// stepFunc draws batch rows per micro-batch from the trainer's shuffler and accumulates
// the gradient of the micro-batch's mean squared error.
func (r *regression) stepFunc(tr *Trainer, params []float32, batch int) StepFunc {
	idx := make([]int, batch)
	return func(_ context.Context, _, _ int, grads []float32) (Micro, error) {
		if err := tr.State.Data.Fill(idx); err != nil {
			return Micro{}, err
		}
		var loss float64
		for _, i := range idx {
			pred := params[r.dim]
			for j, xj := range r.x[i] {
				pred += params[j] * xj
			}
			e := pred - r.y[i]
			loss += float64(e * e)
			d := 2 * e / float32(batch)
			for j, xj := range r.x[i] {
				grads[j] += d * xj
			}
			grads[r.dim] += d
		}
		return Micro{Loss: loss / float64(batch), Tokens: batch}, nil
	}
}

func testConfig(steps, micro int) Config {
	return Config{
		Schedule:     Schedule{PeakLR: 0.05, WarmupSteps: 3, TotalSteps: steps, MinLRRatio: 0.1},
		AdamW:        AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.01, ClipNorm: 1},
		MicroBatches: micro,
	}
}

// newRun builds a trainer on r with a fresh seeded shuffler.
func newRun(t *testing.T, r *regression, cfg Config, seed uint64, batch int) (*Trainer, []float32, StepFunc) {
	t.Helper()
	params := make([]float32, r.dim+1)
	for j := range params {
		params[j] = 0.1 * float32(j%3)
	}
	tr, err := New(cfg, params, make([]float32, len(params)), r.segs, kernels.NewPool(2))
	require.NoError(t, err)
	tr.State.Data = NewShuffler(len(r.x), seed)
	return tr, params, r.stepFunc(tr, params, batch)
}

func TestTrainingReducesLoss(t *testing.T) {
	r := newRegression(64, 8, 1)
	tr, _, fn := newRun(t, r, testConfig(150, 1), 3, 16)
	var first, last Progress
	calls := 0
	require.NoError(t, tr.Run(context.Background(), fn, Hooks{Progress: func(p Progress) {
		if calls == 0 {
			first = p
		}
		last = p
		calls++
	}}))
	assert.Equal(t, 150, calls)
	assert.Equal(t, 150, last.Step)
	assert.Equal(t, 150, last.Total)
	assert.Equal(t, 150, tr.State.Step)
	assert.Equal(t, int64(150*16), tr.State.Tokens)
	assert.Less(t, last.Loss, first.Loss/20, "loss %g -> %g", first.Loss, last.Loss)
	assert.InDelta(t, 0.05/3, first.LR, 1e-12, "first update uses the first warmup LR")
	assert.Positive(t, last.TokensPerSec)
	assert.Equal(t, int64(0), int64(last.ETA))
}

// TestAccumulationEquivalence: two micro-batches of half size give the same update as one
// full batch, since the trainer averages micro-batch gradients of mean losses.
func TestAccumulationEquivalence(t *testing.T) {
	r := newRegression(32, 5, 2)
	full, pFull, fnFull := newRun(t, r, testConfig(10, 1), 9, 16)
	half, pHalf, fnHalf := newRun(t, r, testConfig(10, 2), 9, 8)
	var lossFull, lossHalf []float64
	require.NoError(t, full.Run(context.Background(), fnFull, Hooks{Progress: func(p Progress) { lossFull = append(lossFull, p.Loss) }}))
	require.NoError(t, half.Run(context.Background(), fnHalf, Hooks{Progress: func(p Progress) { lossHalf = append(lossHalf, p.Loss) }}))
	require.Len(t, lossHalf, 10)
	assert.InDeltaSlice(t, lossFull, lossHalf, 1e-5)
	for i := range pFull {
		assert.InDelta(t, pFull[i], pHalf[i], 1e-5, "param %d", i)
	}
	assert.Equal(t, full.State.Data.Pos, half.State.Data.Pos, "both consumed the same rows")
}

func TestClipping(t *testing.T) {
	segs := []Segment{{Name: "v", Offset: 0, Size: 2, Decay: false}}
	cfg := testConfig(1, 1)
	cfg.AdamW.ClipNorm = 1
	params := []float32{0, 0}
	tr, err := New(cfg, params, make([]float32, 2), segs, nil)
	require.NoError(t, err)
	p, err := tr.Step(context.Background(), func(_ context.Context, _, _ int, g []float32) (Micro, error) {
		g[0], g[1] = 3, 4
		return Micro{Loss: 1}, nil
	})
	require.NoError(t, err)
	assert.InDelta(t, 5, p.GradNorm, 1e-12, "norm is reported before clipping")
	assert.True(t, p.Clipped)
	// m = (1-beta1) * clipped gradient = 0.1 * (0.6, 0.8).
	assert.InDelta(t, 0.06, tr.State.M[0], 1e-7)
	assert.InDelta(t, 0.08, tr.State.M[1], 1e-7)

	// Under the limit nothing is scaled.
	tr2, err := New(cfg, []float32{0, 0}, make([]float32, 2), segs, nil)
	require.NoError(t, err)
	p, err = tr2.Step(context.Background(), func(_ context.Context, _, _ int, g []float32) (Micro, error) {
		g[0], g[1] = 0.3, 0.4
		return Micro{Loss: 1}, nil
	})
	require.NoError(t, err)
	assert.False(t, p.Clipped)
	assert.InDelta(t, 0.03, tr2.State.M[0], 1e-7)
}

func TestNonFiniteStopsNamingTheStep(t *testing.T) {
	segs := []Segment{{Name: "w", Offset: 0, Size: 2, Decay: true}, {Name: "norm.gain", Offset: 2, Size: 2}}
	tests := []struct {
		name string
		bad  func(g []float32) float64 // poisons at the bad step, returns the loss
		want string
	}{
		{"nan loss", func([]float32) float64 { return math.NaN() }, "step 3: loss is NaN"},
		{"inf loss", func([]float32) float64 { return math.Inf(1) }, "step 3: loss is +Inf"},
		{"nan gradient", func(g []float32) float64 { g[3] = float32(math.NaN()); return 1 }, "step 3: gradient norm is NaN (first non-finite gradient in norm.gain)"},
		{"inf gradient", func(g []float32) float64 { g[0] = float32(math.Inf(-1)); return 1 }, "step 3: gradient norm is +Inf (first non-finite gradient in w)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			params := []float32{1, 2, 3, 4}
			tr, err := New(testConfig(10, 2), params, make([]float32, 4), segs, nil)
			require.NoError(t, err)
			var before []float32
			err = tr.Run(context.Background(), func(_ context.Context, step, micro int, g []float32) (Micro, error) {
				if step == 2 && micro == 1 {
					before = append([]float32(nil), params...)
					return Micro{Loss: tc.bad(g)}, nil
				}
				g[0] += 0.1
				return Micro{Loss: 1}, nil
			}, Hooks{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Equal(t, 2, tr.State.Step, "the failed update is not counted")
			assert.Equal(t, before, params, "the failed update does not touch the weights")
		})
	}
}

func TestRunHooksAndCancellation(t *testing.T) {
	r := newRegression(16, 3, 4)
	tr, _, fn := newRun(t, r, testConfig(10, 1), 1, 4)
	var saved []int
	require.NoError(t, tr.Run(context.Background(), fn, Hooks{CheckpointEvery: 4, Checkpoint: func(_ context.Context, step int) error {
		saved = append(saved, step)
		return nil
	}}))
	assert.Equal(t, []int{4, 8, 10}, saved, "every 4 steps and at the end")

	tr, _, fn = newRun(t, r, testConfig(10, 1), 1, 4)
	ctx, cancel := context.WithCancel(context.Background())
	err := tr.Run(ctx, fn, Hooks{Progress: func(p Progress) {
		if p.Step == 3 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 3, tr.State.Step, "stops between updates")

	// SaveOnCancel checkpoints the unsaved updates on the way out, with a live context.
	tr, _, fn = newRun(t, r, testConfig(10, 1), 1, 4)
	ctx, cancel = context.WithCancel(context.Background())
	saved = nil
	err = tr.Run(ctx, fn, Hooks{CheckpointEvery: 4, SaveOnCancel: true,
		Progress: func(p Progress) {
			if p.Step == 6 {
				cancel()
			}
		},
		Checkpoint: func(ctx context.Context, step int) error {
			require.NoError(t, ctx.Err())
			saved = append(saved, step)
			return nil
		}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, []int{4, 6}, saved)

	tr, _, fn = newRun(t, r, testConfig(10, 1), 1, 4)
	boom := errors.New("disk full")
	err = tr.Run(context.Background(), fn, Hooks{CheckpointEvery: 2, Checkpoint: func(context.Context, int) error { return boom }})
	require.ErrorIs(t, err, boom)
	assert.Contains(t, err.Error(), "checkpoint at step 2")
}

func TestNewRejectsBadConfig(t *testing.T) {
	segs := []Segment{{Name: "a", Offset: 0, Size: 2}}
	cfg := testConfig(5, 0)
	_, err := New(cfg, make([]float32, 2), make([]float32, 2), segs, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "micro_batches")
	_, err = New(testConfig(5, 1), make([]float32, 2), make([]float32, 3), segs, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "2 parameters but 3 gradients")
	tr, err := New(testConfig(5, 1), make([]float32, 2), make([]float32, 2), segs, nil)
	require.NoError(t, err)
	err = tr.Resume(NewState(3))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "moments for 3 parameters")
}

// TestDeterminism: same seed and data give bit-identical weights; another seed does not.
func TestDeterminism(t *testing.T) {
	r := newRegression(40, 6, 5)
	run := func(seed uint64) []float32 {
		tr, params, fn := newRun(t, r, testConfig(25, 2), seed, 4)
		require.NoError(t, tr.Run(context.Background(), fn, Hooks{}))
		return params
	}
	a, b, c := run(11), run(11), run(12)
	assert.Equal(t, a, b)
	assert.NotEqual(t, a, c)
}

// TestResumeIsBitExact trains N steps straight, and N/2 + save + load into fresh objects +
// N/2, and compares every float of weights, moments and cursor.
func TestResumeIsBitExact(t *testing.T) {
	const steps = 20
	r := newRegression(40, 6, 6)
	straight, pStraight, fnStraight := newRun(t, r, testConfig(steps, 2), 21, 6)
	require.NoError(t, straight.Run(context.Background(), fnStraight, Hooks{}))

	dir := t.TempDir()
	first, pFirst, fnFirst := newRun(t, r, testConfig(steps, 2), 21, 6)
	ctx, cancel := context.WithCancel(context.Background())
	err := first.Run(ctx, fnFirst, Hooks{CheckpointEvery: steps / 2, Checkpoint: func(_ context.Context, step int) error {
		// What a stage does: save weights, then the trainer state.
		require.NoError(t, writeFloats(filepath.Join(dir, "weights.bin"), pFirst))
		require.NoError(t, SaveState(dir, first.State))
		cancel()
		return nil
	}})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, steps/2, first.State.Step)

	st, err := LoadState(dir)
	require.NoError(t, err)
	second, pSecond, fnSecond := newRun(t, r, testConfig(steps, 2), 999, 6) // seed comes from the state
	w, err := readFloats(filepath.Join(dir, "weights.bin"))
	require.NoError(t, err)
	copy(pSecond, w)
	require.NoError(t, second.Resume(st))
	require.NoError(t, second.Run(context.Background(), fnSecond, Hooks{}))

	assert.Equal(t, steps, second.State.Step)
	assert.Equal(t, bits(pStraight), bits(pSecond), "weights")
	assert.Equal(t, bits(straight.State.M), bits(second.State.M), "first moments")
	assert.Equal(t, bits(straight.State.V), bits(second.State.V), "second moments")
	assert.Equal(t, straight.State.Tokens, second.State.Tokens)
	assert.Equal(t, *straight.State.Data, Shuffler{N: second.State.Data.N, Seed: second.State.Data.Seed,
		Epoch: second.State.Data.Epoch, Pos: second.State.Data.Pos, perm: straight.State.Data.perm, permEpoch: straight.State.Data.permEpoch})
}

func bits(x []float32) []uint32 {
	out := make([]uint32, len(x))
	for i, v := range x {
		out[i] = math.Float32bits(v)
	}
	return out
}

func writeFloats(path string, x []float32) error {
	b := make([]byte, 0, 4*len(x))
	for _, v := range x {
		u := math.Float32bits(v)
		b = append(b, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return os.WriteFile(path, b, 0o644)
}

func readFloats(path string) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
	}
	return out, nil
}

func TestStateSaveLoad(t *testing.T) {
	dir := t.TempDir()
	st := NewState(5)
	for i := range st.M {
		st.M[i], st.V[i] = float32(i)*0.5-1, float32(i)*1e-3
	}
	st.M[2] = float32(math.Copysign(0, -1))
	st.Step, st.Tokens = 7, 1234
	st.Data = &Shuffler{N: 10, Seed: 3, Epoch: 1, Pos: 4}
	st.Extra = map[string]string{"corpus": "abc"}
	st.Config = testConfig(9, 2)
	require.NoError(t, SaveState(dir, st))
	assert.True(t, HasState(dir))
	assert.False(t, HasState(t.TempDir()))

	got, err := LoadState(dir)
	require.NoError(t, err)
	assert.Equal(t, bits(st.M), bits(got.M))
	assert.Equal(t, bits(st.V), bits(got.V))
	assert.Equal(t, 7, got.Step)
	assert.Equal(t, int64(1234), got.Tokens)
	assert.Equal(t, Shuffler{N: 10, Seed: 3, Epoch: 1, Pos: 4}, *got.Data)
	assert.Equal(t, st.Extra, got.Extra)
	assert.Equal(t, st.Config, got.Config)

	// The moments file is safetensors with PyTorch's names for the AdamW state.
	r, err := safetensors.Open(filepath.Join(dir, StateMomentsFile))
	require.NoError(t, err)
	info, ok := r.Lookup("exp_avg_sq")
	require.True(t, ok)
	assert.Equal(t, []int{5}, info.Shape)
	require.NoError(t, r.Close())

	// A JSON that disagrees with the moments file is rejected, naming the tensor.
	jsonPath := filepath.Join(dir, StateJSONFile)
	orig, err := os.ReadFile(jsonPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(jsonPath, []byte(strings.Replace(string(orig), `"params": 5`, `"params": 4`, 1)), 0o644))
	_, err = LoadState(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `tensor "exp_avg" is F32 [5], want F32 [4]`)
	require.NoError(t, os.WriteFile(jsonPath, orig, 0o644))
	_, err = LoadState(dir)
	require.NoError(t, err)

	// Corruptions are rejected with the file named.
	bin := filepath.Join(dir, StateMomentsFile)
	raw, err := os.ReadFile(bin)
	require.NoError(t, err)
	raw[len(raw)-1] ^= 1
	require.NoError(t, os.WriteFile(bin, raw, 0o644))
	_, err = LoadState(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "checksum")
	assert.Contains(t, err.Error(), StateMomentsFile)

	require.NoError(t, os.WriteFile(filepath.Join(dir, StateJSONFile), []byte("{"), 0o644))
	_, err = LoadState(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), StateJSONFile)

	_, err = LoadState(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "load trainer state")
}

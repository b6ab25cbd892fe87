package trainer

import (
	"context"
	"testing"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lmRun is a tiny causal LM trained by the trainer on a fixed, learnable token pattern.
type lmRun struct {
	tr     *Trainer
	model  *transformer.Model
	grads  *transformer.Params
	ws     *transformer.Workspace
	step   StepFunc
	losses []float64
}

func newLMRun(t *testing.T, steps int, pool *kernels.Pool) *lmRun {
	t.Helper()
	const rows, T, B = 24, 32, 4
	cfg, err := transformer.Preset("tiny")
	require.NoError(t, err)
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(5)
	data := make([][]int32, rows)
	for r := range data {
		data[r] = make([]int32, T+1)
		for i := range data[r] {
			data[r][i] = int32((r*7 + i*3) % 61) // every next token follows from the current one and the row
		}
	}
	run := &lmRun{model: m, grads: m.NewGrads(), ws: m.NewWorkspace(B, T)}
	segs, err := ParamSegments(m.W)
	require.NoError(t, err)
	tcfg := Config{
		Schedule:     Schedule{PeakLR: 3e-3, WarmupSteps: 4, TotalSteps: steps, MinLRRatio: 0.1},
		AdamW:        DefaultAdamW(),
		MicroBatches: 1,
	}
	run.tr, err = New(tcfg, m.W.Data, run.grads.Data, segs, pool)
	require.NoError(t, err)
	run.tr.State.Data = NewShuffler(rows, 17)
	batch := &transformer.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	weights := make([]float32, B*T)
	for i := range weights {
		weights[i] = 1
	}
	idx := make([]int, B)
	run.step = func(_ context.Context, _, _ int, _ []float32) (Micro, error) {
		if err := run.tr.State.Data.Fill(idx); err != nil {
			return Micro{}, err
		}
		for b, r := range idx {
			copy(batch.Tokens[b*T:(b+1)*T], data[r][:T])
			copy(batch.Targets[b*T:(b+1)*T], data[r][1:])
		}
		loss, err := m.WeightedNLL(run.ws, batch, weights, run.grads)
		return Micro{Loss: loss, Tokens: B * T}, err
	}
	return run
}

func (r *lmRun) hooks() Hooks {
	return Hooks{Progress: func(p Progress) { r.losses = append(r.losses, p.Loss) }}
}

func TestTrainsTinyTransformer(t *testing.T) {
	steps := 60
	if testing.Short() {
		steps = 30
	}
	pool := kernels.NewPool(2)
	defer pool.Close()
	run := newLMRun(t, steps, pool)
	require.NoError(t, run.tr.Run(context.Background(), run.step, run.hooks()))
	require.Len(t, run.losses, steps)
	first, last := run.losses[0], run.losses[steps-1]
	assert.InDelta(t, 6.24, first, 0.3, "an untrained model is near uniform over 512 tokens (ln 512)")
	assert.Less(t, last, first/2, "loss %.3f -> %.3f", first, last)
	assert.Empty(t, run.model.W.HasNonFinite())
}

// TestTinyTransformerResumeIsBitExact: N steps straight equal N/2 steps, saving the weights
// and trainer state, loading both into fresh objects, and N/2 more.
func TestTinyTransformerResumeIsBitExact(t *testing.T) {
	const steps = 8
	pool := kernels.NewPool(2)
	defer pool.Close()
	straight := newLMRun(t, steps, pool)
	require.NoError(t, straight.tr.Run(context.Background(), straight.step, straight.hooks()))

	dir := t.TempDir()
	first := newLMRun(t, steps, pool)
	for i := 0; i < steps/2; i++ {
		_, err := first.tr.Step(context.Background(), first.step)
		require.NoError(t, err)
	}
	weights := append([]float32(nil), first.model.W.Data...)
	require.NoError(t, SaveState(dir, first.tr.State))

	second := newLMRun(t, steps, pool)
	copy(second.model.W.Data, weights)
	st, err := LoadState(dir)
	require.NoError(t, err)
	require.NoError(t, second.tr.Resume(st))
	require.NoError(t, second.tr.Run(context.Background(), second.step, second.hooks()))

	assert.Equal(t, bits(straight.model.W.Data), bits(second.model.W.Data), "weights")
	assert.Equal(t, bits(straight.tr.State.M), bits(second.tr.State.M))
	assert.Equal(t, bits(straight.tr.State.V), bits(second.tr.State.V))
	assert.Equal(t, straight.losses[steps/2:], second.losses)
}

package bench

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func tinyOptions() Options {
	o := DefaultOptions()
	o.Preset, o.Threads = "tiny", 2
	o.Batch, o.Seq, o.WarmupSteps, o.Steps = 2, 32, 3, 4
	o.PromptLen, o.Samples, o.NewTokens = 8, 3, 5
	o.SgemmTime = 5 * time.Millisecond
	return o
}

func TestRunMeasuresEverything(t *testing.T) {
	var stages []string
	res, err := Run(context.Background(), tinyOptions(), func(s string) { stages = append(stages, s) })
	require.NoError(t, err)
	assert.Equal(t, []string{"training", "sampling", "sgemm"}, stages)
	assert.Positive(t, res.TrainTokensPerS)
	assert.Positive(t, res.SampleTokensPerS)
	assert.Positive(t, res.TrainTokensPerCPUS)
	assert.Positive(t, res.SampleTokensPerCPUS)
	assert.Positive(t, res.SgemmGFLOPS)
	assert.Positive(t, res.SgemmGFLOPSOneThread)
	assert.Positive(t, res.OptimizerMS)
	assert.GreaterOrEqual(t, res.PeakRSSBytes, res.PeakRSSTrainBytes)
	assert.Positive(t, res.PeakRSSTrainBytes)
	// tiny: vocab 512, hidden 64, 2 layers of q 64x64, k and v 32x64, o 64x64, 3 MLP
	// matrices 176x64 and 2 gains; untied head; final norm.
	const h, layer = 64, 64*64 + 2*32*64 + 64*64 + 3*176*64 + 2*64
	assert.Equal(t, 2*512*h+2*layer+h, res.Parameters)
	assert.Equal(t, [3]int{64, 176, 64}, res.SgemmShape)
	assert.Equal(t, 2, res.Threads)
	assert.Empty(t, res.Missing)
	// A warm step allocates nothing, on 2 threads too (issue 3).
	assert.Zero(t, res.AllocsPerStep, "allocations per step: %g (%g bytes)", res.AllocsPerStep, res.BytesPerStep)
	assert.Less(t, res.BytesPerStep, float64(64<<10))
}

func TestRunRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"preset", func(o *Options) { o.Preset = "giant" }, `unknown model preset "giant"`},
		{"batch", func(o *Options) { o.Batch = 0 }, "batch 0"},
		{"steps", func(o *Options) { o.Steps = 0 }, "steps 0"},
		{"threads", func(o *Options) { o.Threads = -1 }, "threads"},
		{"seq", func(o *Options) { o.Seq = 4096 }, "exceeds preset tiny's context 256"},
		{"sampling", func(o *Options) { o.NewTokens = 1000 }, "exceed the context"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tinyOptions()
			tc.edit(&o)
			_, err := Run(context.Background(), o, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

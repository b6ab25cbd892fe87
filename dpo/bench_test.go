package dpo

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/require"
)

// BenchmarkDPOTrainStep measures DPO training throughput on the bench preset: one
// optimizer update per iteration over 4 pairs (64-token prompt, 64-token chosen and
// rejected responses: 8 sequences of 127 positions), forward + objective + backward +
// AdamW. The reference log-probs are precomputed, as in training. Reports pairs/s.
func BenchmarkDPOTrainStep(b *testing.B) {
	const batch, promptLen, respLen = 4, 64, 64
	pool := kernels.NewPool(runtime.NumCPU())
	defer pool.Close()
	cfg, err := transformer.Preset("bench")
	require.NoError(b, err)
	m, err := transformer.New(cfg, pool)
	require.NoError(b, err)
	m.Init(1)
	rng := rand.New(rand.NewPCG(1, 2))
	ids := func(n int) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(rng.IntN(cfg.VocabSize))
		}
		return out
	}
	pairs := make([]Pair, 16)
	for i := range pairs {
		fmtMask := make([]bool, respLen)
		fmtMask[respLen-1] = true
		pairs[i] = Pair{Prompt: ids(promptLen), Chosen: ids(respLen), Rejected: ids(respLen), ChosenFmt: fmtMask, RejectedFmt: fmtMask}
	}
	ref, _, err := ReferenceLogProbs(context.Background(), m, pairs, true, batch, "")
	require.NoError(b, err)
	obj, err := objectives.NewDPO(objectives.DefaultDPOOptions())
	require.NoError(b, err)
	segs, err := trainer.ParamSegments(m.W)
	require.NoError(b, err)
	grads := m.NewGrads()
	tcfg := DefaultConfig()
	tcfg.Batch = batch
	tr, err := trainer.New(trainer.Config{Schedule: trainer.Schedule{PeakLR: 1e-5, TotalSteps: 1 << 30}, AdamW: tcfg.AdamW, MicroBatches: 1},
		m.W.Data, grads.Data, segs, pool)
	require.NoError(b, err)
	tr.State.Data = trainer.NewShuffler(len(pairs), 1)
	step := newTrainStep(m, grads, obj, pairs, ref, tr.State, tcfg)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Step(context.Background(), step.run); err != nil {
			b.Fatal(err)
		}
		step.parts = step.parts[:0]
	}
	b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "pairs/s")
}

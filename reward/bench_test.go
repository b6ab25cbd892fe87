package reward

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/require"
)

// Benchmark workload on the bench preset: 64-token prompts, 64-token responses.
const (
	benchPrompt   = 64
	benchResponse = 64
	benchPairs    = 8 // preference rows per training step (16 sequences)
)

func benchRM(b *testing.B) *transformer.Model {
	pool := kernels.NewPool(runtime.GOMAXPROCS(0))
	b.Cleanup(pool.Close)
	m, err := FromCausalLM(testmodel.Preset(b, pool, "bench", 1), 1, 0.02)
	require.NoError(b, err)
	return m
}

func benchRows(n, vocab int) []datasets.EncodedPreference {
	rng := rand.New(rand.NewPCG(3, 4))
	ids := func(k int) []int32 { return randomIDs(rng, k, vocab) }
	rows := make([]datasets.EncodedPreference, n)
	for i := range rows {
		rows[i] = datasets.EncodedPreference{Prompt: ids(benchPrompt), Responses: [][]int32{ids(benchResponse), ids(benchResponse)}}
	}
	return rows
}

// BenchmarkTrainStep measures one reward-model update (forward, Bradley-Terry loss and
// gradient, backward, AdamW) on 8 pairs of 128-token sequences; it reports pairs/s.
func BenchmarkTrainStep(b *testing.B) {
	m := benchRM(b)
	rows := benchRows(64, m.Config.VocabSize)
	prep, _, err := prepare(rows, MarginNone, 0)
	require.NoError(b, err)
	bt, err := objectives.NewBradleyTerry(objectives.BTOptions{})
	require.NoError(b, err)
	sc, err := NewScorer(m, 2*benchPairs, benchPrompt+benchResponse)
	require.NoError(b, err)
	grads := m.NewGrads()
	segs, err := trainer.ParamSegments(m.W)
	require.NoError(b, err)
	tr, err := trainer.New(trainer.Config{Schedule: trainer.Schedule{PeakLR: 1e-5, TotalSteps: 1 << 30}, AdamW: trainer.DefaultAdamW(), MicroBatches: 1},
		m.W.Data, grads.Data, segs, m.Pool)
	require.NoError(b, err)
	tr.State.Data = trainer.NewShuffler(len(prep), 1)
	step := &trainStep{sc: sc, grads: grads, bt: bt, rows: rows, prep: prep, state: tr.State,
		idx: make([]int, benchPairs), dOut: make([]float32, sc.MaxBatch()), rewards: make([]float64, sc.MaxBatch())}
	ctx := context.Background()
	_, err = tr.Step(ctx, step.run) // warm-up
	require.NoError(b, err)
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if _, err := tr.Step(ctx, step.run); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*benchPairs)/b.Elapsed().Seconds(), "pairs/s")
	reportPerCPU(b, processCPU()-cpu0, float64(b.N*benchPairs), "pairs/cpu-s")
}

// BenchmarkScore measures Score on 64 sequences of 128 tokens, 16 per forward pass; it
// reports rows (sequences) per second.
func BenchmarkScore(b *testing.B) {
	m := benchRM(b)
	rows := benchRows(32, m.Config.VocabSize)
	var seqs []datasets.Sequence
	for _, r := range rows {
		for _, resp := range r.Responses {
			seqs = append(seqs, datasets.Sequence{Prompt: r.Prompt, Response: resp})
		}
	}
	sc, err := NewScorer(m, 16, benchPrompt+benchResponse)
	require.NoError(b, err)
	ctx := context.Background()
	_, err = sc.Score(ctx, seqs)
	require.NoError(b, err)
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i++ {
		if _, err := sc.Score(ctx, seqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(seqs))/b.Elapsed().Seconds(), "rows/s")
	reportPerCPU(b, processCPU()-cpu0, float64(b.N*len(seqs)), "rows/cpu-s")
}

// reportPerCPU reports work per CPU-second when CPU time is measurable.
func reportPerCPU(b *testing.B, cpu time.Duration, work float64, unit string) {
	if cpu > 0 {
		b.ReportMetric(work/cpu.Seconds(), unit)
	}
}

package sft

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/kernels"
	"github.com/stretchr/testify/require"
)

// BenchmarkSFTTrainStep measures packed SFT training on the bench preset: each iteration
// is one update of 8 rows of 256 positions packed from 64-token examples (half prompt,
// half target). Reports target tokens/s and positions/s.
func BenchmarkSFTTrainStep(b *testing.B) {
	pool := kernels.NewPool(runtime.NumCPU())
	defer pool.Close()
	m := testmodel.Preset(b, pool, "bench", 1)
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([]datasets.EncodedSFT, 256)
	for i := range rows {
		r := datasets.EncodedSFT{IDs: make([]int32, 65), Targets: make([]bool, 65)}
		for j := range r.IDs {
			r.IDs[j] = int32(rng.IntN(m.Config.VocabSize))
			r.Targets[j] = j > 32
		}
		rows[i] = r
	}
	c := DefaultConfig()
	c.Steps, c.Batch, c.Packing = b.N, 8, true
	var positions, targets int
	b.ResetTimer()
	start := time.Now()
	_, res, err := Train(context.Background(), c, m, rows, nil, Hooks{})
	require.NoError(b, err)
	sec := time.Since(start).Seconds()
	positions = int(res.Tokens)
	targets = b.N * 8 * 4 * 32 // 4 examples of 32 targets per packed row
	b.ReportMetric(float64(positions)/sec, "positions/s")
	b.ReportMetric(float64(targets)/sec, "targets/s")
}

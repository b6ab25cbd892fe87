package datastore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// BenchmarkRecordCandidates writes one sampling shard: 64 prompts x K=16 candidates of
// 48 tokens each, as a retry would (upserting the same keys).
func BenchmarkRecordCandidates(b *testing.B) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(b))
	_, err := s.CreateRun(ctx, datastore.Run{ID: "bench"})
	require.NoError(b, err)
	ids := make([]int32, 48)
	var cs []datastore.Candidate
	for p := range 64 {
		for k := range 16 {
			cs = append(cs, datastore.Candidate{RunID: "bench", Round: 1, PromptID: fmt.Sprintf("prompt-%03d", p), SampleIndex: k,
				Text: "The answer is forty-two, because the question was about that.", TokenIDs: ids, Reward: float64(k)})
		}
	}
	b.ResetTimer()
	for range b.N {
		require.NoError(b, s.RecordCandidates(ctx, cs))
	}
	b.ReportMetric(float64(len(cs)*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkRecordMetrics writes the metrics of one logging step (8 names) through the
// batch path, and of a whole stage (1000 steps x 8 names) through the COPY path.
func BenchmarkRecordMetrics(b *testing.B) {
	for _, steps := range []int{1, 1000} {
		b.Run(fmt.Sprintf("steps=%d", steps), func(b *testing.B) {
			ctx := context.Background()
			s := datastore.New(pgtest.NewDB(b))
			_, err := s.CreateRun(ctx, datastore.Run{ID: "bench"})
			require.NoError(b, err)
			var ms []datastore.Metric
			for step := range steps {
				for n := range 8 {
					ms = append(ms, datastore.Metric{RunID: "bench", Round: 1, Stage: "dpo", Variant: "0", Step: int64(step), Name: fmt.Sprintf("m%d", n), Value: float64(step)})
				}
			}
			b.ResetTimer()
			for range b.N {
				require.NoError(b, s.RecordMetrics(ctx, ms))
			}
			b.ReportMetric(float64(len(ms)*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

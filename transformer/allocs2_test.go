package transformer

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTrainingStepAllocatesNothingOnTwoWorkers runs Forward+Backward steps on a 2-worker
// pool with shapes big enough that the matmuls split over the workers and attention runs
// in parallel over (batch row, key/value head) with its own Sgemm calls nested inside
// the Parallel section. Once warm, a step must allocate nothing: no packing buffers for
// the nested calls, and nothing for the pool's wake-ups.
// Many steps are counted in one run so that a rare allocation is not averaged away.
func TestTrainingStepAllocatesNothingOnTwoWorkers(t *testing.T) {
	tests := []struct {
		name              string
		hidden, heads, kv int
		B, T, steps       int
	}{
		{"grouped-query attention", 128, 4, 2, 4, 128, 12},
		{"more heads than cores", 64, 8, 4, 2, 192, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(false, false)
			cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize = 512, tt.hidden, 3*tt.hidden
			cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.MaxPositionEmbeddings = tt.heads, tt.kv, tt.T
			m := newTestModel(t, cfg, 2, 1)
			require.Equal(t, 2, m.Pool.Workers())
			b := randomBatch(cfg, tt.B, tt.T, 1)
			ws := m.NewWorkspace(tt.B, tt.T)
			g := m.NewGrads()
			dOut := make([]float32, tt.B*tt.T)
			for i := range dOut {
				dOut[i] = 0.01
			}
			step := func() {
				require.NoError(t, m.Forward(ws, b))
				require.NoError(t, m.Backward(ws, b, dOut, g))
			}
			for range 3 {
				step()
			}
			allocs := testing.AllocsPerRun(1, func() {
				for range tt.steps {
					step()
				}
			})
			assert.Zero(t, allocs, "allocations in %d warm steps", tt.steps)
		})
	}
}

package transformer

import (
	"runtime/metrics"
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
		name                      string
		layers, hidden, heads, kv int
		B, T, steps               int
	}{
		{"grouped-query attention", 2, 128, 4, 2, 4, 128, 12},
		{"more heads than cores", 2, 64, 8, 4, 2, 192, 12},
		// Thousands of pool calls: the old channel wake-ups allocated a runtime sudog
		// about once in this many.
		{"many small steps", 4, 64, 4, 2, 2, 128, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(false, false)
			cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize = 512, tt.hidden, 3*tt.hidden
			cfg.NumHiddenLayers = tt.layers
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
			var stepErr error
			// No require inside the step: its t.Helper() call can allocate.
			step := func() {
				if err := m.Forward(ws, b); err != nil {
					stepErr = err
				}
				if err := m.Backward(ws, b, dOut, g); err != nil {
					stepErr = err
				}
			}
			for range 3 {
				step()
			}
			var allocs float64
			for range 3 {
				before := runtimeGrowth()
				allocs = testing.AllocsPerRun(1, func() {
					for range tt.steps {
						step()
					}
				})
				if runtimeGrowth() == before {
					break
				}
				// The runtime started an OS thread or goroutine of its own (once per
				// process, the first time it needs that many), allocating its structs:
				// not a cost of the step. Measure again.
			}
			require.NoError(t, stepErr)
			assert.Zero(t, allocs, "allocations in %d warm steps", tt.steps)
		})
	}
}

// runtimeGrowth sums the OS threads the runtime has and the goroutines it has created.
func runtimeGrowth() uint64 {
	samples := []metrics.Sample{{Name: "/sched/threads/total:threads"}, {Name: "/sched/goroutines-created:goroutines"}}
	metrics.Read(samples)
	var sum uint64
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			sum += s.Value.Uint64()
		}
	}
	return sum
}

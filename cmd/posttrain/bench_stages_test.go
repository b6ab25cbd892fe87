package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBenchStagesReportsSamplingAndDPO(t *testing.T) {
	out, _, err := runCLI(t, "bench", "--preset", "tiny", "--steps", "1", "--warmup", "1",
		"--sgemm-time", "50ms", "--skip-sampling", "--stages", "--json")
	require.NoError(t, err)
	var res struct {
		TrainTokensPerS float64 `json:"train_tokens_per_s"`
		Stages          struct {
			RejectionSampling map[string]struct {
				Shared struct {
					SamplesPerSec   float64 `json:"samples_per_s"`
					PrefillTokens   int64   `json:"prefill_tokens"`
					GeneratedTokens int64   `json:"generated_tokens"`
				} `json:"shared"`
				Unshared struct {
					SamplesPerSec float64 `json:"samples_per_s"`
				} `json:"unshared"`
				Speedup float64 `json:"speedup"`
			} `json:"rejection_sampling"`
			DPO struct {
				PairsPerSec float64 `json:"pairs_per_s"`
			} `json:"dpo_train"`
		} `json:"stages"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res), out)
	assert.Positive(t, res.TrainTokensPerS)
	for _, k := range []string{"k16", "k30"} {
		r, ok := res.Stages.RejectionSampling[k]
		require.True(t, ok, "missing %s", k)
		assert.Positive(t, r.Shared.SamplesPerSec, k)
		assert.Positive(t, r.Unshared.SamplesPerSec, k)
		assert.Positive(t, r.Speedup, k)
		assert.Positive(t, r.Shared.PrefillTokens, k)
		assert.Positive(t, r.Shared.GeneratedTokens, k)
	}
	assert.Positive(t, res.Stages.DPO.PairsPerSec)
}

package activities

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/workflows"
)

// TestSampleShardVerifiesAgainstTheAnswer samples a round with sampling.verify on and off
// and checks every stored verdict against the prompts' reference answers, computed here
// independently, and that no failing sample is ever selected.
func TestSampleShardVerifiesAgainstTheAnswer(t *testing.T) {
	tests := []struct {
		mode    string
		checked bool
	}{
		{"answer", true},
		{"none", false},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			p := f.startWith(t, "run-verify-"+tc.mode, "sampling.verify="+tc.mode, "sampling.k=4", "sampling.shards=1")
			_, err := f.env().ExecuteActivity(f.acts.Annotate, workflows.AnnotateRequest{RunID: p.RunID, Round: 0, Kind: workflows.AnnotatorSimulated, Policy: p.BaseModel, Seed: 1})
			require.NoError(t, err)
			v, err := f.env().ExecuteActivity(f.acts.TrainReward, workflows.TrainRequest{RunID: p.RunID, Round: 1, Init: p.BaseModel, Seed: 1})
			require.NoError(t, err)
			var rm workflows.ModelResult
			require.NoError(t, v.Get(&rm))
			_, err = f.env().ExecuteActivity(f.acts.SampleShard, workflows.SampleRequest{RunID: p.RunID, Round: 1, Shard: 0, Shards: 1,
				Policy: p.BaseModel, RewardModel: rm.ArtifactID, Seed: 1})
			require.NoError(t, err)

			cands, err := f.db.ListCandidates(ctx, datastore.CandidateFilter{RunID: p.RunID, Round: 1})
			require.NoError(t, err)
			require.NotEmpty(t, cands)
			ids := make([]string, 0, len(cands))
			for _, c := range cands {
				ids = append(ids, c.PromptID)
			}
			prompts, err := f.db.GetPrompts(ctx, ids)
			require.NoError(t, err)
			answers := map[string]string{}
			for _, pr := range prompts {
				answers[pr.ID], _ = pr.Metadata["answer"].(string)
			}
			selected := 0
			for _, c := range cands {
				if c.Selected {
					selected++
				}
				if !tc.checked {
					assert.Nil(t, c.Verified, "verify=none stores no verdict")
					continue
				}
				require.NotNil(t, c.Verified, "prompt %s sample %d: every bundled-task sample is checked", c.PromptID, c.SampleIndex)
				want, ok := answers[c.PromptID]
				require.True(t, ok, "prompt %s has a reference answer", c.PromptID)
				assert.Equal(t, strings.TrimSpace(c.Text) == want, *c.Verified, "sample %q against answer %q", c.Text, want)
				if c.Selected {
					assert.True(t, *c.Verified, "a sample that failed the check is never selected")
				}
			}
			if !tc.checked {
				assert.Positive(t, selected, "without the check the reward model keeps a sample per prompt")
			}
		})
	}
}

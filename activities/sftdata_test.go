package activities

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
)

func TestSFTExamplesTakeTheRoundOrEveryRoundSoFar(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.start(t, "run-d")
	cfg, err := f.acts.config(ctx, p.RunID)
	require.NoError(t, err)
	n := names(cfg, p.RunID)
	prompts, err := f.acts.trainPrompts(ctx, n)
	require.NoError(t, err)
	curated, err := f.db.ListSFTExamples(ctx, datastore.DataFilter{Dataset: n.SFT, Split: datastore.SplitTrain})
	require.NoError(t, err)
	require.NotEmpty(t, curated)

	// Rounds 1..3 each select one sample on each of two prompts and reject another.
	var cs []datastore.Candidate
	for round := 1; round <= 3; round++ {
		for i, pr := range prompts[:2] {
			for s := 0; s < 2; s++ {
				cs = append(cs, datastore.Candidate{RunID: p.RunID, Round: round, PromptID: pr.ID, SampleIndex: s,
					Text: fmt.Sprintf("r%d p%d s%d", round, i, s), TokenIDs: []int32{1}, Selected: s == 0})
			}
		}
	}
	require.NoError(t, f.db.RecordCandidates(ctx, cs))

	tests := []struct {
		name      string
		round     int
		allRounds bool
		want      []string
	}{
		{"round 2 only", 2, false, []string{"r2 p0 s0", "r2 p1 s0"}},
		{"rounds 1 and 2, not the later round 3", 2, true, []string{"r1 p0 s0", "r1 p1 s0", "r2 p0 s0", "r2 p1 s0"}},
		{"round 1 accumulates nothing more", 1, true, []string{"r1 p0 s0", "r1 p1 s0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := f.acts.sftExamples(ctx, p.RunID, tt.round, tt.allRounds, n)
			require.NoError(t, err)
			require.Len(t, got, len(tt.want)+len(curated), "selected samples plus the curated data")
			var texts []string
			for _, ex := range got[:len(tt.want)] {
				texts = append(texts, ex.Completion.String)
			}
			require.ElementsMatch(t, tt.want, texts)
		})
	}
}

func TestDPOTakesTheLatestAnnotationBatch(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.start(t, "run-latest")
	cfg, err := f.acts.config(ctx, p.RunID)
	require.NoError(t, err)
	n := names(cfg, p.RunID)
	_, err = f.db.CreateDataset(ctx, datastore.Dataset{Name: n.Annotations, Kind: datastore.KindPreferences})
	require.NoError(t, err)
	// Batches from rounds 0, 1 and 3; round 2's policy gave the annotator nothing.
	var rows []datastore.PreferencePair
	for _, round := range []int{0, 1, 3} {
		for i := range 2 {
			rows = append(rows, datastore.PreferencePair{Dataset: n.Annotations, Ord: int64(round)<<32 | int64(i), Round: round,
				Prompt: datastore.Segment{Text: fmt.Sprintf("q%d", i)}, Chosen: datastore.Segment{Text: fmt.Sprintf("right r%d", round)},
				Rejected: datastore.Segment{Text: fmt.Sprintf("wrong r%d p%d", round, i)}, Split: datastore.SplitTrain})
		}
	}
	_, err = f.db.InsertPreferencePairs(ctx, rows)
	require.NoError(t, err)
	tests := []struct {
		round, wantBatch int
	}{
		{1, 0}, {2, 1}, {3, 1}, {4, 3}, {6, 3},
	}
	for _, tt := range tests {
		got, err := f.acts.latestPreferences(ctx, n.Annotations, tt.round)
		require.NoError(t, err)
		require.Len(t, got, 2, "round %d", tt.round)
		for _, r := range got {
			require.Equal(t, tt.wantBatch, r.Round, "round %d trains DPO on the batch of round %d", tt.round, tt.wantBatch)
		}
	}
	none, err := f.acts.latestPreferences(ctx, n.Annotations, 0)
	require.NoError(t, err)
	require.Empty(t, none, "nothing was collected before round 0")
}

package activities

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/workflows"
)

// startWith runs StartRun with the tiny settings plus extra overrides.
func (f *fixture) startWith(t *testing.T, id string, extra ...string) workflows.Plan {
	t.Helper()
	sets := append(append([]string{}, tinySets...), extra...)
	v, err := f.env().ExecuteActivity(f.acts.StartRun, workflows.StartRunRequest{WorkflowID: id, Input: workflows.RunInput{Preset: "demo", Overrides: sets}})
	require.NoError(t, err)
	var p workflows.Plan
	require.NoError(t, v.Get(&p))
	return p
}

// greedyCandidates stores three SFT candidates made from the base model: good1 (the
// base), good2 (the base with the input embeddings of tokens absent from the held-out
// rows changed, so its held-out loss, and that of any soup of the two, equals good1's
// exactly) and bad (every weight under heavy noise). It returns their artifact IDs and
// local directories in that order.
func greedyCandidates(t *testing.T, f *fixture, heldOut []datasets.EncodedSFT) (ids, dirs []string) {
	t.Helper()
	ctx := context.Background()
	pool := kernels.NewPool(2)
	defer pool.Close()
	used := map[int32]bool{}
	for _, r := range heldOut {
		for _, id := range r.IDs {
			used[id] = true
		}
	}
	save := func(name string, edit func(w []float32, embed []float32, hidden int)) {
		m, err := checkpoint.Load(ctx, f.base, pool)
		require.NoError(t, err)
		require.False(t, m.Config.TieWordEmbeddings, "the construction needs untied embeddings")
		edit(m.W.Data, m.W.Embed, m.Config.HiddenSize)
		dir := filepath.Join(t.TempDir(), name)
		require.NoError(t, checkpoint.Save(ctx, dir, m, checkpoint.SaveOptions{TokenizerFrom: f.base}))
		art, err := f.acts.putModel(ctx, dir, "model", datastore.StageKey{}, 0, map[string]any{"test": name}, nil)
		require.NoError(t, err)
		ids, dirs = append(ids, art.ID), append(dirs, dir)
	}
	save("good1", func([]float32, []float32, int) {})
	save("good2", func(_, embed []float32, hidden int) {
		changed := 0
		for tok := range len(embed) / hidden {
			if !used[int32(tok)] {
				for j := range hidden {
					embed[tok*hidden+j] += 0.05 * float32(j%7-3)
				}
				changed++
			}
		}
		require.Positive(t, changed)
	})
	save("bad", func(w []float32, _ []float32, _ int) {
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range w {
			w[i] += float32(rng.NormFloat64())
		}
	})
	return ids, dirs
}

func readTensors(t *testing.T, dir string) map[string][]float32 {
	t.Helper()
	r, err := safetensors.Open(filepath.Join(dir, checkpoint.WeightsFile))
	require.NoError(t, err)
	defer r.Close()
	out := map[string][]float32{}
	for _, ti := range r.Tensors() {
		out[ti.Name], err = r.Float32(ti.Name)
		require.NoError(t, err)
	}
	return out
}

func TestAverageGreedyKeepsTheGoodVariantsAndDropsTheBadOne(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.startWith(t, "run-greedy", "sft.averaging=greedy")
	cfg, err := f.acts.config(ctx, p.RunID)
	require.NoError(t, err)

	// The held-out rows the activity scores on: the SFT data's eval split.
	val, source, err := f.acts.heldOutSFT(ctx, cfg, names(cfg, p.RunID))
	require.NoError(t, err)
	require.NotEmpty(t, val)
	require.Equal(t, p.SFTData, source)
	tok, _, err := loadTokenizer(f.base)
	require.NoError(t, err)
	heldOut, err := encodeSFT(&datasets.Encoder{Tok: tok, MaxLen: cfg.Model.MaxSeqLen}, val)
	require.NoError(t, err)
	ids, dirs := greedyCandidates(t, f, heldOut)
	good1, good2, bad := ids[0], ids[1], ids[2]

	// The bad variant comes second: greedy ranks by score, not input order.
	req := workflows.AverageRequest{RunID: p.RunID, Round: 1, Stage: workflows.StageSFT, Inputs: []string{good1, bad, good2}}
	v, err := f.env().ExecuteActivity(f.acts.Average, req)
	require.NoError(t, err)
	var res workflows.ModelResult
	require.NoError(t, v.Get(&res))

	art, err := f.db.GetArtifact(ctx, res.ArtifactID)
	require.NoError(t, err)
	require.Equal(t, "greedy", art.Metadata["method"])
	require.Equal(t, []any{good1, good2}, art.Metadata["kept"])
	require.Equal(t, []any{0.5, 0.0, 0.5}, art.Metadata["weights"], "weights follow the inputs; the dropped one has 0")
	require.Equal(t, "val_loss", art.Metadata["score_metric"])
	require.Equal(t, p.SFTData, art.Metadata["held_out_dataset"])
	steps, ok := art.Metadata["greedy_steps"].([]any)
	require.True(t, ok, "%T", art.Metadata["greedy_steps"])
	require.Len(t, steps, 3)
	fate := map[string]map[string]any{}
	for _, s := range steps {
		m := s.(map[string]any)
		fate[m["candidate"].(string)] = m
	}
	require.Equal(t, true, fate[good1]["kept"])
	require.Equal(t, true, fate[good2]["kept"])
	require.Equal(t, false, fate[bad]["kept"])
	require.Equal(t, good1, steps[0].(map[string]any)["candidate"], "the best (first of the tied good ones) starts the soup")
	require.Equal(t, bad, steps[2].(map[string]any)["candidate"], "the worst is tried last")
	require.Greater(t, fate[bad]["score"].(float64), fate[good1]["score"].(float64)+0.5, "the bad variant's loss is clearly worse")
	require.Equal(t, fate[good1]["score"], fate[good2]["soup_score"], "the good soup scores as good1")
	require.Greater(t, fate[bad]["soup_score"].(float64), fate[good1]["score"].(float64))

	// Metrics: one row per step (in the order tried) plus the totals.
	ms, err := f.db.ListMetrics(ctx, datastore.MetricFilter{RunID: p.RunID, Round: 1, Stage: datastore.StageAverage, Variant: workflows.StageSFT})
	require.NoError(t, err)
	got := map[string]map[int64]float64{}
	for _, m := range ms {
		if got[m.Name] == nil {
			got[m.Name] = map[int64]float64{}
		}
		got[m.Name][m.Step] = m.Value
	}
	require.Equal(t, map[int64]float64{1: 0, 2: 2, 3: 1}, got["greedy_candidate"], "input indexes in the order tried")
	require.Equal(t, map[int64]float64{1: 1, 2: 1, 3: 0}, got["greedy_kept"])
	require.Equal(t, 2.0, got["greedy_kept_count"][0])
	require.Equal(t, float64(len(val)), got["greedy_held_out"][0])
	require.Equal(t, fate[good1]["score"], got["greedy_final_score"][0])

	// Lineage: only the kept variants made the soup.
	edges, err := f.db.Lineage(ctx, res.ArtifactID)
	require.NoError(t, err)
	var variants []string
	for _, e := range edges {
		if e.Depth == 1 && e.Role == "variant" {
			variants = append(variants, e.Parent)
		}
	}
	require.ElementsMatch(t, []string{good1, good2}, variants)

	// The soup's weights are the element-wise mean of the kept variants.
	soupDir, err := f.acts.modelDir(ctx, res.ArtifactID)
	require.NoError(t, err)
	soup, w1, w2 := readTensors(t, soupDir), readTensors(t, dirs[0]), readTensors(t, dirs[1])
	require.Len(t, soup, len(w1))
	differ := 0
	for name, s := range soup {
		for i := range s {
			require.InDelta(t, (w1[name][i]+w2[name][i])/2, s[i], 1e-6, "%s[%d]", name, i)
			if w1[name][i] != w2[name][i] {
				differ++
			}
		}
	}
	require.Positive(t, differ, "the two kept variants differ, so the mean is a real average")

	// A re-run returns the recorded soup.
	v, err = f.env().ExecuteActivity(f.acts.Average, req)
	require.NoError(t, err)
	var again workflows.ModelResult
	require.NoError(t, v.Get(&again))
	require.Equal(t, res, again)
}

func TestAverageGreedyWithoutHeldOutDataFallsBackToUniform(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// No annotations yet: the reward stage has no held-out pairs.
	p := f.startWith(t, "run-greedy-rm", "reward.averaging=greedy")
	ids, _ := greedyCandidates(t, f, nil)
	v, err := f.env().ExecuteActivity(f.acts.Average, workflows.AverageRequest{RunID: p.RunID, Round: 1, Stage: workflows.StageReward, Inputs: ids})
	require.NoError(t, err)
	var res workflows.ModelResult
	require.NoError(t, v.Get(&res))
	art, err := f.db.GetArtifact(ctx, res.ArtifactID)
	require.NoError(t, err)
	require.Equal(t, "uniform", art.Metadata["method"])
	require.Equal(t, "greedy", art.Metadata["configured_method"])
	require.Contains(t, art.Metadata["greedy_fallback"], "no held-out reward data")
	require.Len(t, art.Metadata["weights"], 3)
}

func TestAverageGreedyDPOFindsTheReferenceInTheLineage(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.startWith(t, "run-greedy-dpo", "dpo.averaging=greedy")
	ids, _ := greedyCandidates(t, f, nil)
	// ids[0] is byte-identical to the base model; the third plays the reference here.
	for _, id := range ids[:2] {
		require.NoError(t, f.db.AddLineage(ctx, ids[2], id, "reference"))
	}
	tests := []struct {
		name string
		req  workflows.AverageRequest
		want string
	}{
		{"from the request", workflows.AverageRequest{Inputs: ids, Reference: ids[1]}, ids[1]},
		{"from the lineage", workflows.AverageRequest{Inputs: ids}, ids[2]},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := f.acts.dpoReference(ctx, tc.req)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	_, err := f.acts.dpoReference(ctx, workflows.AverageRequest{Inputs: []string{ids[2]}})
	require.ErrorContains(t, err, "no reference model")
}

// insertEvalPairs stores held-out preference pairs of the bundled task (the right answer
// over a wrong one) in the run's annotations, as round 0 collects them.
func insertEvalPairs(t *testing.T, f *fixture, p workflows.Plan, n int) {
	t.Helper()
	rows := make([]datastore.PreferencePair, n)
	for i, it := range demotask.Generate(11, demotask.Eval, n) {
		rows[i] = datastore.PreferencePair{Dataset: p.Annotations, Ord: int64(i),
			Prompt: datastore.Segment{Messages: []datastore.Message{{Role: "user", Content: it.UserText()}}},
			Chosen: datastore.Segment{Text: it.Answer}, Rejected: datastore.Segment{Text: "no idea " + it.Answer + "?"},
			Source: "test", Round: 0, Split: datastore.SplitEval}
	}
	_, err := f.db.InsertPreferencePairs(context.Background(), rows)
	require.NoError(t, err)
}

// TestAverageGreedyScoresRewardAndDPOOnHeldOutPairs runs the reward and DPO scores for
// real (reward models and policies of the tiny preset on stored held-out pairs) and
// checks what the soup records is consistent: every candidate has a step, the weights
// are uniform over the kept ones, the DPO soup names its reference.
func TestAverageGreedyScoresRewardAndDPOOnHeldOutPairs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.startWith(t, "run-greedy-pairs", "reward.averaging=greedy", "dpo.averaging=greedy")
	insertEvalPairs(t, f, p, 6)
	policies, _ := greedyCandidates(t, f, nil)

	pool := kernels.NewPool(2)
	defer pool.Close()
	var rms []string
	for seed := range uint64(3) {
		m, err := checkpoint.LoadAsClassifier(ctx, f.base, pool, checkpoint.ScoreInit{Seed: seed + 1, Std: 0.5})
		require.NoError(t, err)
		dir := filepath.Join(t.TempDir(), "rm")
		require.NoError(t, checkpoint.Save(ctx, dir, m, checkpoint.SaveOptions{TokenizerFrom: f.base}))
		art, err := f.acts.putModel(ctx, dir, "reward_model", datastore.StageKey{}, 0, nil, nil)
		require.NoError(t, err)
		rms = append(rms, art.ID)
	}
	tests := []struct {
		stage, metric, reference string
		inputs                   []string
	}{
		{workflows.StageReward, "accuracy", "", rms},
		{workflows.StageDPO, "dpo_accuracy", policies[0], policies},
	}
	for _, tc := range tests {
		t.Run(tc.stage, func(t *testing.T) {
			req := workflows.AverageRequest{RunID: p.RunID, Round: 1, Stage: tc.stage, Inputs: tc.inputs, Reference: tc.reference}
			v, err := f.env().ExecuteActivity(f.acts.Average, req)
			require.NoError(t, err)
			var res workflows.ModelResult
			require.NoError(t, v.Get(&res))
			art, err := f.db.GetArtifact(ctx, res.ArtifactID)
			require.NoError(t, err)
			require.Equal(t, "greedy", art.Metadata["method"])
			require.Equal(t, tc.metric, art.Metadata["score_metric"])
			require.Equal(t, 6.0, art.Metadata["held_out_rows"])
			require.Equal(t, p.Annotations, art.Metadata["held_out_dataset"])
			steps := art.Metadata["greedy_steps"].([]any)
			require.Len(t, steps, 3)
			t.Logf("%s greedy steps: %v", tc.stage, steps)
			kept := art.Metadata["kept"].([]any)
			require.NotEmpty(t, kept)
			require.Equal(t, kept[0], steps[0].(map[string]any)["candidate"], "the best candidate starts the soup")
			weights := art.Metadata["weights"].([]any)
			sum := 0.0
			for i, w := range weights {
				want := 0.0
				for _, k := range kept {
					if k == tc.inputs[i] {
						want = 1 / float64(len(kept))
					}
				}
				require.InDelta(t, want, w.(float64), 1e-12, "input %d", i)
				sum += w.(float64)
			}
			for _, s := range steps {
				score := s.(map[string]any)["score"].(float64)
				require.True(t, score >= 0 && score <= 1, "an accuracy: %v", score)
			}
			require.InDelta(t, 1, sum, 1e-12)
			if tc.reference != "" {
				require.Equal(t, tc.reference, art.Metadata["reference"])
				edges, err := f.db.Lineage(ctx, res.ArtifactID)
				require.NoError(t, err)
				refs := 0
				for _, e := range edges {
					if e.Depth == 1 && e.Role == "reference" {
						require.Equal(t, tc.reference, e.Parent)
						refs++
					}
				}
				require.Equal(t, 1, refs)
			}
			ms, err := f.db.ListMetrics(ctx, datastore.MetricFilter{RunID: p.RunID, Round: 1, Stage: datastore.StageAverage, Variant: tc.stage, Name: "greedy_kept"})
			require.NoError(t, err)
			require.Len(t, ms, 3)
		})
	}
}
